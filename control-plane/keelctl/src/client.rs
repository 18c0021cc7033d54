//! Reaching the control plane: etcd v3 clients on the members' client URLs, every question
//! bounded by `--command-timeout` (a member that does not answer must not hang the tool).

use std::future::Future;
use std::time::Duration;

/// Why a member could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        endpoint: String,
        reason: &'static str,
    },
    #[error("no endpoint given")]
    NoEndpoints,
    #[error("{endpoint}: no answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("{endpoint}: {message}")]
    Request { endpoint: String, message: String },
}

/// Checks one client URL: `http://host:port`. keel's client listener speaks plain HTTP/2,
/// so `https://` is refused here rather than failing later with a handshake error.
pub fn parse_endpoint(text: &str) -> Result<String, ClientError> {
    let invalid = |reason| ClientError::InvalidEndpoint {
        endpoint: text.to_owned(),
        reason,
    };
    if text.is_empty() {
        return Err(invalid("it is empty"));
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("it contains whitespace or a control character"));
    }
    if text.starts_with("https://") {
        return Err(invalid(
            "keel's client listener serves plain HTTP; use http://",
        ));
    }
    let Some(rest) = text.strip_prefix("http://") else {
        return Err(invalid("it must be http://host:port"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.starts_with(':') {
        return Err(invalid("it names no host"));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// Where and how long to ask.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoints: Vec<String>,
    pub timeout: Duration,
}

impl Target {
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let endpoints = endpoints
            .iter()
            .map(|e| parse_endpoint(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { endpoints, timeout })
    }

    /// The endpoints as one label for errors.
    pub fn label(&self) -> String {
        self.endpoints.join(",")
    }

    /// A client balancing over all endpoints (etcd-client connects lazily: errors surface at
    /// the first request, under its deadline).
    pub async fn connect(&self) -> Result<etcd_client::Client, ClientError> {
        connect(&self.endpoints, self.timeout).await
    }
}

/// A client of `endpoints` whose connects and requests give up after `timeout`.
pub async fn connect(
    endpoints: &[String],
    timeout: Duration,
) -> Result<etcd_client::Client, ClientError> {
    let label = endpoints.join(",");
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout);
    ask(
        &label,
        timeout,
        etcd_client::Client::connect(endpoints, Some(options)),
    )
    .await
}

/// Runs one request with a deadline, naming `endpoint` in its error. The deadline is ours as
/// well as the client's: a balanced channel with no reachable endpoint waits for one forever.
pub async fn ask<T>(
    endpoint: &str,
    timeout: Duration,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(timeout, request).await {
        Err(_) => Err(ClientError::Timeout {
            endpoint: endpoint.to_owned(),
            timeout,
        }),
        Ok(Err(e)) => Err(ClientError::Request {
            endpoint: endpoint.to_owned(),
            message: describe(&e),
        }),
        Ok(Ok(answer)) => Ok(answer),
    }
}

/// An etcd-client error as a person reads it: a gRPC status by its message (not its debug
/// form with metadata), followed by the causes that say more ("tcp connect error" alone
/// hides "Connection refused").
pub fn describe(error: &etcd_client::Error) -> String {
    let (mut text, mut source) = match error {
        etcd_client::Error::GRpcStatus(status) => {
            let text = if status.message().is_empty() {
                format!("{:?}", status.code())
            } else {
                status.message().to_owned()
            };
            (text, std::error::Error::source(status))
        }
        other => (other.to_string(), std::error::Error::source(other)),
    };
    while let Some(cause) = source {
        append_cause(&mut text, &cause.to_string());
        source = cause.source();
    }
    text
}

/// Appends `cause` unless the text already says it (wrapped errors often repeat their
/// source's message in their own).
pub fn append_cause(text: &mut String, cause: &str) {
    if !cause.is_empty() && !text.contains(cause) {
        text.push_str(": ");
        text.push_str(cause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:2379/").ok().as_deref(),
            Some("http://127.0.0.1:2379")
        );
        assert!(parse_endpoint("http://[::1]:2379").is_ok());
        for bad in [
            "",
            "127.0.0.1:2379",
            "https://127.0.0.1:2379",
            "http://",
            "http://:2379",
            "http://a b:2379",
            "http://host\n:2379",
            "ftp://host",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?} was accepted");
        }
        let error = parse_endpoint("https://x:1").err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains("plain HTTP")),
            "{error:?}"
        );
    }

    #[test]
    fn a_target_needs_an_endpoint() {
        assert!(matches!(
            Target::new(Vec::new(), Duration::from_secs(1)),
            Err(ClientError::NoEndpoints)
        ));
        let target = Target::new(
            vec!["http://a:1".into(), "http://b:2".into()],
            Duration::from_secs(1),
        );
        assert_eq!(
            target.map(|t| t.label()).ok().as_deref(),
            Some("http://a:1,http://b:2")
        );
    }

    #[test]
    fn causes_are_appended_once() {
        let mut text = "listing: tcp connect error".to_owned();
        append_cause(&mut text, "tcp connect error");
        append_cause(&mut text, "Connection refused (os error 111)");
        append_cause(&mut text, "");
        assert_eq!(
            text,
            "listing: tcp connect error: Connection refused (os error 111)"
        );
    }

    #[tokio::test]
    async fn a_silent_request_times_out() {
        let never = std::future::pending::<Result<(), etcd_client::Error>>();
        let error = ask("http://x:1", Duration::from_millis(20), never).await;
        assert!(
            matches!(&error, Err(ClientError::Timeout { endpoint, .. }) if endpoint == "http://x:1"),
            "{error:?}"
        );
    }
}
