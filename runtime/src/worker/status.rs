//! The pod's status, as the kubelet computes it, published for the CLI, metrics and the proxy.

use super::*;

impl Worker {
    /// Writes the pod's status and the worker's record, and updates the shared view.
    pub(super) fn publish(&mut self) {
        let statuses: Vec<ContainerStatus> = self
            .slots
            .values()
            .map(|s| s.record.status.clone())
            .collect();
        let phase = lifecycle::pod_phase(self.pod.pod.spec.restart_policy, &statuses);
        let ip = self.sandbox.as_ref().map(|s| s.record.ip.to_string());
        let status = PodStatus {
            phase,
            conditions: lifecycle::pod_conditions(&statuses, &self.start_time),
            message: self.sandbox_error.clone(),
            reason: self
                .sandbox_error
                .as_ref()
                .map(|_| "SandboxError".to_owned()),
            host_ip: self.config.node_ip.map(|ip| ip.to_string()),
            pod_ip: ip.clone(),
            pod_ips: ip.map(|ip| vec![PodIp { ip }]).unwrap_or_default(),
            start_time: Some(self.start_time.clone()),
            container_statuses: statuses,
        };
        let record = RuntimeRecord {
            containers: self
                .slots
                .iter()
                .map(|(n, s)| (n.clone(), s.record.clone()))
                .collect(),
        };
        for result in [
            state::write_json_if_changed(
                &self.dir.dir.join("runtime.json"),
                &record,
                &mut self.written_record,
            ),
            state::write_json_if_changed(
                &self.dir.status_json(),
                &status,
                &mut self.written_status,
            ),
        ] {
            if let Err(error) = result {
                tracing::error!(pod = %self.pod.uid, "{error}");
            }
        }
        let view = PodView {
            namespace: self.pod.pod.metadata.namespace().to_owned(),
            name: self.pod.pod.metadata.name.clone(),
            labels: self.pod.pod.metadata.labels.clone(),
            status,
            pids: self
                .slots
                .keys()
                .filter_map(|n| {
                    let running: Running =
                        state::read_json(&self.dir.container(n).running_json()).ok()??;
                    Some((n.clone(), running.pid))
                })
                .collect(),
            ports: self
                .pod
                .pod
                .spec
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().cloned())
                .collect(),
            terminating: self.terminating,
        };
        let key = view.endpoint_key();
        let changed = {
            let mut views = self
                .config
                .views
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if views.get(&self.pod.uid) == Some(&view) {
                false
            } else {
                views.insert(self.pod.uid.clone(), view);
                true
            }
        };
        // Only a change wakes the status reporter: its round looks at every pod of the node.
        if changed {
            self.config.status_changed.notify_one();
        }
        if self.endpoint_key.as_ref() != Some(&key) {
            self.endpoint_key = Some(key);
            self.endpoint_version = self
                .config
                .endpoints_version
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            self.config.endpoints_changed.notify_one();
        }
    }
}
