//! ImageLocality: favours nodes that already hold the pod's images, by their size, so that
//! big images are pulled less often.
//!
//! An image counts for its size scaled by the share of nodes holding it: an image on one node
//! in ten counts a tenth, so that pods of a new image do not all crowd the first node that
//! pulled it (the "node heating" problem). The sum, clamped between 23MB and 1000MB per
//! container, is mapped onto 0–100.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{CycleState, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::node_info::NodeInfo;

pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
/// Below this the images' share is too small to matter: score 0.
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container: at or above it an image is as good as any (90% of images on Docker Hub are
/// smaller).
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The plugin, with what it needs of the whole cluster: how many nodes there are and how many
/// hold each image name.
#[derive(Clone, Debug, Default)]
pub struct ImageLocality {
    total_nodes: usize,
    image_node_counts: BTreeMap<String, usize>,
}

impl ImageLocality {
    pub fn new(total_nodes: usize, image_node_counts: BTreeMap<String, usize>) -> ImageLocality {
        ImageLocality {
            total_nodes,
            image_node_counts,
        }
    }

    /// Counts, over the cluster's nodes, the nodes whose `status.images` name each image.
    pub fn from_nodes(nodes: &[Node]) -> ImageLocality {
        let mut image_node_counts = BTreeMap::new();
        for node in nodes {
            let names: BTreeSet<&str> = node
                .status
                .iter()
                .flat_map(|status| status.images.iter().flatten())
                .flat_map(|image| image.names.iter().flatten())
                .map(String::as_str)
                .collect();
            for name in names {
                *image_node_counts.entry(name.to_string()).or_insert(0) += 1;
            }
        }
        ImageLocality::new(nodes.len(), image_node_counts)
    }

    /// An image's size scaled by the share of nodes holding it (at least the node scored).
    fn scaled_image_score(&self, name: &str, size: i64) -> i64 {
        if self.total_nodes == 0 {
            return 0;
        }
        let holding = self.image_node_counts.get(name).copied().unwrap_or(1);
        let spread = holding as f64 / self.total_nodes as f64;
        (size as f64 * spread) as i64
    }
}

/// What PreScore computes once per pod: each container's image name as the runtime reports
/// it (init containers first), and how many nodes hold each.
struct PreScoreState {
    images: Vec<String>,
    counts: ImageLocality,
}

/// The normalized image name of every container of the pod, init containers first.
fn container_images(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|spec| {
            spec.init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
        })
        .map(|container| normalized_image_name(container.image.as_deref().unwrap_or_default()))
        .collect()
}

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Counts, once per pod, how many of the cluster's nodes hold each of the pod's images
    /// (kube-scheduler keeps these counts in its snapshot; keel computes the few it needs),
    /// and normalizes the pod's image names once rather than once per node.
    fn pre_score(
        &self,
        pod: &Pod,
        _feasible: &[&NodeInfo],
        all: &[NodeInfo],
        state: &mut CycleState,
    ) -> Status {
        // No node reports images (nodes without a daemon that fills status.images): every
        // node would score 0, which adds nothing to any total, so the plugin skips the pod
        // without walking the cluster.
        if state
            .cluster_summary()
            .is_some_and(|summary| summary.nodes_with_images == 0)
        {
            return Status::skip();
        }
        let images = container_images(pod);
        let wanted: BTreeSet<&String> = images.iter().collect();
        let mut counts = BTreeMap::new();
        for node in all {
            // Most nodes report no images until a node daemon fills status.images.
            if node.image_sizes.is_empty() {
                continue;
            }
            for name in &wanted {
                if node.image_sizes.contains_key(*name) {
                    *counts.entry((*name).clone()).or_insert(0) += 1;
                }
            }
        }
        let counts = ImageLocality::new(all.len(), counts);
        state.write(NAME, PreScoreState { images, counts });
        Status::success()
    }

    /// Init containers count as the other containers do, in the sum and in the maximum.
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        // The cycle's names and counts when pre_score ran; the pod's names and the plugin's
        // own counts (tests, what-if questions) otherwise.
        let computed;
        let (images, counts) = match state.read::<PreScoreState>(NAME) {
            Some(pre_score) => (pre_score.images.as_slice(), &pre_score.counts),
            None => {
                computed = container_images(pod);
                (computed.as_slice(), self)
            }
        };
        // A node without images scores the minimum: no look-ups.
        let sum: i64 = if node.image_sizes.is_empty() {
            0
        } else {
            images
                .iter()
                .filter_map(|name| {
                    let size = *node.image_sizes.get(name)?;
                    Some(counts.scaled_image_score(name, size))
                })
                .sum()
        };
        Ok(calculate_priority(sum, images.len()))
    }
}

/// Maps the summed image scores onto 0–100 between the thresholds, truncating.
fn calculate_priority(sum: i64, containers: usize) -> i64 {
    let max_threshold =
        MAX_CONTAINER_THRESHOLD.saturating_mul(i64::try_from(containers).unwrap_or(i64::MAX));
    let sum = if sum < MIN_THRESHOLD {
        MIN_THRESHOLD
    } else if sum > max_threshold {
        max_threshold
    } else {
        sum
    };
    // A pod without containers has a max below the min; its sum is the min, so 0.
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

/// The name as the runtime reports it: `:latest` appended when no tag is given (a digest or a
/// tag after the last `/` is kept).
pub fn normalized_image_name(name: &str) -> String {
    let last_colon = name.rfind(':');
    let last_slash = name.rfind('/');
    // Go's strings.LastIndex returns -1 when absent, below any index: None < Some(_) agrees.
    if last_colon <= last_slash {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests;
