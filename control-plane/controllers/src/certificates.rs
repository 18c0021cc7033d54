//! kube-controller-manager's `csrapproving` and `csrsigning` controllers, for the certificates
//! a node joins with: a node's client certificate (`kubernetes.io/kube-apiserver-client-kubelet`)
//! is approved when the request is exactly what a kubelet asks for and a SubjectAccessReview
//! says its requester may ask for it (a join token's `nodeclient`, or a node renewing its own,
//! `selfnodeclient`); approved requests of the signers keel serves are then issued from the
//! cluster CA. Anything else waits for a person (`kubectl certificate approve|deny`).
//!
//! The decisions are pure functions of the request ([`decide`]); this module watches, asks and
//! writes.

pub mod decide;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::Client;
use serde_json::json;

use crate::workqueue::{ControllerHandle, WorkQueue, WorkQueueMetrics};
use decide::{Decision, NodeClientRequest};

pub const APPROVER_QUEUE: &str = "certificate";
pub const SIGNER_QUEUE: &str = "certificate_signer";
/// kube-controller-manager's `--cluster-signing-duration` default: a year.
pub const DEFAULT_SIGNING_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// What issues certificates: the cluster CA, owned by the control plane's process.
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// A PEM certificate for the PKCS#10 request `request_pem` (as the object holds it), valid
    /// for `duration` from now, with the key usages `usages` (the request's, already checked).
    fn sign(
        &self,
        request_pem: &[u8],
        usages: &[String],
        duration: Duration,
    ) -> Result<String, String>;
}

pub struct Options {
    /// Approve kubelets' client certificates (`csrapproving`).
    pub approve: bool,
    /// Sign approved requests (`csrsigning`); None signs nothing.
    pub signer: Option<Arc<dyn Signer>>,
    /// The longest certificate issued (`--cluster-signing-duration`).
    pub signing_duration: Duration,
    pub metrics: Option<Arc<WorkQueueMetrics>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            approve: true,
            signer: None,
            signing_duration: DEFAULT_SIGNING_DURATION,
            metrics: None,
        }
    }
}

struct Context {
    client: Client,
    requests: Store<CertificateSigningRequest>,
    approver: Option<Arc<WorkQueue>>,
    signer: Option<(Arc<WorkQueue>, Arc<dyn Signer>)>,
    signing_duration: Duration,
    synced: crate::informer::CachesSynced,
}

fn queue(name: &str, metrics: &Option<Arc<WorkQueueMetrics>>) -> Arc<WorkQueue> {
    WorkQueue::shared(name, metrics.as_deref())
}

/// Starts the approver and/or the signer on the current tokio runtime.
pub fn start(client: Client, options: Options) -> ControllerHandle {
    let approver = options
        .approve
        .then(|| queue(APPROVER_QUEUE, &options.metrics));
    let signer = options
        .signer
        .map(|signer| (queue(SIGNER_QUEUE, &options.metrics), signer));
    let (requests, writer) = reflector::store::<CertificateSigningRequest>();
    let context = Arc::new(Context {
        client: client.clone(),
        requests,
        approver: approver.clone(),
        signer: signer.clone(),
        signing_duration: options.signing_duration,
        synced: Default::default(),
    });
    let mut tasks = vec![tokio::spawn(watch(
        context.clone(),
        Api::all(client),
        writer,
    ))];
    let mut queues = Vec::new();
    if let Some(queue) = approver {
        tasks.push(tokio::spawn(approve_worker(context.clone(), queue.clone())));
        queues.push(queue);
    }
    if let Some((queue, _)) = signer {
        tasks.push(tokio::spawn(sign_worker(context, queue.clone())));
        queues.push(queue);
    }
    ControllerHandle::new(queues, tasks)
}

fn name_of(request: &CertificateSigningRequest) -> String {
    request.metadata.name.clone().unwrap_or_default()
}

async fn watch(
    context: Arc<Context>,
    api: Api<CertificateSigningRequest>,
    mut writer: reflector::store::Writer<CertificateSigningRequest>,
) {
    let mut stream = crate::informer::watch_events(
        api,
        watcher::Config::default(),
        "watching certificate signing requests",
    );
    while let Some(event) = stream.next().await {
        writer.apply_watcher_event(&event);
        let queue_all = |request: &CertificateSigningRequest| {
            let name = name_of(request);
            if let Some(queue) = &context.approver {
                queue.add(&name);
            }
            if let Some((queue, _)) = &context.signer {
                queue.add(&name);
            }
        };
        match &event {
            Event::Apply(request) | Event::InitApply(request) => queue_all(request),
            Event::Delete(_) | Event::Init | Event::InitDone => {}
        }
    }
}

/// Waits for the first list; false when the watch task is gone (the controller is stopping).
async fn listed(context: &Context) -> bool {
    context
        .synced
        .wait(|| async { context.requests.wait_until_ready().await.is_ok() })
        .await
}

async fn approve_worker(context: Arc<Context>, queue: Arc<WorkQueue>) {
    if listed(&context).await {
        let context = &context;
        queue
            .work(
                "approving a certificate signing request",
                |name| async move { approve(context, &name).await },
            )
            .await;
    }
}

async fn sign_worker(context: Arc<Context>, queue: Arc<WorkQueue>) {
    if listed(&context).await {
        let context = &context;
        queue
            .work("signing a certificate signing request", |name| async move {
                sign(context, &name).await
            })
            .await;
    }
}

/// kube's `sarApprover`: a well-formed node client request whose requester may ask for it.
async fn approve(context: &Context, name: &str) -> Result<(), kube::Error> {
    let Some(request) = context.requests.get(&ObjectRef::new(name)) else {
        return Ok(());
    };
    if decide::is_decided(&request) {
        return Ok(());
    }
    let node_request = match decide::node_client_request(&request) {
        Ok(node_request) => node_request,
        // Not a kubelet's client certificate (or not well-formed as one): a person decides.
        Err(reason) => {
            tracing::debug!(csr = %name, %reason, "not auto-approved");
            return Ok(());
        }
    };
    let subresource = match node_request {
        NodeClientRequest::New => "nodeclient",
        NodeClientRequest::Renewal => "selfnodeclient",
    };
    if !requester_may(context, &request, subresource).await? {
        tracing::info!(csr = %name, subresource, "the requester may not ask for this certificate; left for a person");
        return Ok(());
    }
    let mut approved = (*request).clone();
    let condition = json!({
        "type": "Approved",
        "status": "True",
        "reason": "AutoApproved",
        "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
    });
    approved
        .status
        .get_or_insert_with(Default::default)
        .conditions = Some(vec![
        serde_json::from_value(condition).map_err(kube::Error::SerdeError)?
    ]);
    let api: Api<CertificateSigningRequest> = Api::all(context.client.clone());
    api.replace_subresource("approval", name, &PostParams::default(), &approved)
        .await?;
    tracing::info!(csr = %name, "approved a node client certificate");
    Ok(())
}

/// A SubjectAccessReview for the request's requester, as the request recorded it.
async fn requester_may(
    context: &Context,
    request: &CertificateSigningRequest,
    subresource: &str,
) -> Result<bool, kube::Error> {
    let spec = &request.spec;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            uid: spec.uid.clone(),
            groups: spec.groups.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(context.client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// kube's `csrsigning`: approved, unsigned requests of a signer keel serves get a certificate,
/// or a Failed condition when the request is not one that signer may issue.
async fn sign(context: &Context, name: &str) -> Result<(), kube::Error> {
    let Some((_, signer)) = &context.signer else {
        return Ok(());
    };
    let Some(request) = context.requests.get(&ObjectRef::new(name)) else {
        return Ok(());
    };
    let api: Api<CertificateSigningRequest> = Api::all(context.client.clone());
    let mut updated = (*request).clone();
    let status = updated.status.get_or_insert_with(Default::default);
    match decide::signing(&request, context.signing_duration) {
        Decision::Skip => return Ok(()),
        Decision::Fail { reason, message } => {
            tracing::info!(csr = %name, %message, "refusing to sign");
            let condition = json!({"type": "Failed", "status": "True", "reason": reason,
                                   "message": message});
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(serde_json::from_value(condition).map_err(kube::Error::SerdeError)?);
        }
        Decision::Sign { duration } => {
            let usages = request.spec.usages.clone().unwrap_or_default();
            match signer.sign(&request.spec.request.0, &usages, duration) {
                Ok(pem) => {
                    status.certificate = Some(k8s_openapi::ByteString(pem.into_bytes()));
                    tracing::info!(csr = %name, ?duration, "issued a certificate");
                }
                Err(message) => {
                    tracing::warn!(csr = %name, %message, "the signer failed");
                    let condition = json!({"type": "Failed", "status": "True",
                        "reason": "SignerValidationFailure", "message": message});
                    status
                        .conditions
                        .get_or_insert_with(Vec::new)
                        .push(serde_json::from_value(condition).map_err(kube::Error::SerdeError)?);
                }
            }
        }
    }
    api.replace_status(name, &PostParams::default(), &updated)
        .await?;
    Ok(())
}
