//! The controller's Prometheus metrics, under kube's `endpoint_slice_controller_` names.
//!
//! kube's counters carry no `_total` suffix (Go's client does not add one); prometheus-client
//! writes OpenMetrics, where a counter's sample always ends in `_total`, so they read
//! `endpoint_slice_controller_changes_total` and `endpoint_slice_controller_syncs_total` here.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// `create`, `update` or `delete`.
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success`, `error` or `stale` (the slice cache lagged the controller's writes).
    pub result: String,
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// `endpoint_slice_controller_changes{operation}`: EndpointSlice writes.
    pub changes: Family<OperationLabels, Counter>,
    /// `endpoint_slice_controller_syncs{result}`: service syncs.
    pub syncs: Family<ResultLabels, Counter>,
}

impl Metrics {
    /// Registers every metric under the `endpoint_slice_controller_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let controller = registry.sub_registry_with_prefix("endpoint_slice_controller");
        controller.register(
            "changes",
            "Number of EndpointSlice changes",
            self.changes.clone(),
        );
        controller.register("syncs", "Number of EndpointSlice syncs", self.syncs.clone());
    }

    pub fn change(&self, operation: &str) {
        self.changes
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .inc();
    }

    pub fn sync(&self, result: &str) {
        self.syncs
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }
}
