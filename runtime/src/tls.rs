//! The TLS client of `scheme: HTTPS` probes. Like the kubelet, keel does not verify the
//! probed server's certificate: a pod's serving certificate is usually issued for its Service
//! name, not for the pod IP the probe dials, and a probe asks "is it alive?", not "is it who
//! it claims to be?". The handshake itself is real (signatures are checked against the key the
//! server presents), so a server that cannot speak TLS fails the probe.

use std::sync::{Arc, OnceLock};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{ring, CryptoProvider},
    pki_types::{CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::{client::TlsStream, TlsConnector};

/// Opens a TLS session over `stream` to `host` (a name or an IP address, sent as SNI where it
/// is a name).
pub async fn connect(host: &str, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
    let invalid = |err: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, err);
    let name = ServerName::try_from(host.to_owned()).map_err(|err| invalid(err.to_string()))?;
    let config = config().map_err(|err| invalid(err.to_string()))?;
    TlsConnector::from(config).connect(name, stream).await
}

/// One client configuration for every probe: building it loads the provider's algorithms.
fn config() -> Result<Arc<ClientConfig>, rustls::Error> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, rustls::Error>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(ring::default_provider());
            let verifier = Arc::new(AnyCertificate(provider.clone()));
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// Accepts any certificate chain and name (the kubelet's `InsecureSkipVerify`), but checks the
/// handshake's signatures, so the session is a TLS session with whoever holds that key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
