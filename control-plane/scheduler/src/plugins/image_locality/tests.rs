use super::*;
use crate::testing::{cluster, node, pod, score_all, PodBuilder, MB};

/// A node holding `images`: (names, size in MB).
fn with_images(name: &str, images: &[(&[&str], i64)]) -> Node {
    images
        .iter()
        .fold(node(name), |node, (names, size)| {
            node.image(names, size * MB)
        })
        .obj()
}

fn node_40_300_2000(name: &str) -> Node {
    with_images(
        name,
        &[
            (&["gcr.io/40:latest", "gcr.io/40:v1", "gcr.io/40:v1"], 40),
            (&["gcr.io/300:latest", "gcr.io/300:v1"], 300),
            (&["gcr.io/2000:latest"], 2000),
        ],
    )
}

fn node_250_10(name: &str) -> Node {
    with_images(
        name,
        &[
            (&["gcr.io/250:latest"], 250),
            (&["gcr.io/10:latest", "gcr.io/10:v1"], 10),
        ],
    )
}

fn node_600_40_900(name: &str) -> Node {
    with_images(
        name,
        &[
            (&["gcr.io/600:latest"], 600),
            (&["gcr.io/40:latest"], 40),
            (&["gcr.io/900:latest"], 900),
        ],
    )
}

fn node_300_600_900(name: &str) -> Node {
    with_images(
        name,
        &[
            (&["gcr.io/300:latest"], 300),
            (&["gcr.io/600:latest"], 600),
            (&["gcr.io/900:latest"], 900),
        ],
    )
}

fn node_4000_30(name: &str) -> Node {
    with_images(
        name,
        &[(&["gcr.io/4000:latest"], 4000), (&["gcr.io/30:latest"], 30)],
    )
}

fn node_20_30_40(name: &str) -> Node {
    with_images(
        name,
        &[
            (&["gcr.io/20:latest"], 20),
            (&["gcr.io/30:latest"], 30),
            (&["gcr.io/40:latest"], 40),
        ],
    )
}

fn images(images: &[&str]) -> PodBuilder {
    images
        .iter()
        .fold(pod(), |builder, image| builder.image(image))
}

/// kube-scheduler's `TestImageLocalityPriority`, every case: sizes are scaled by the share of
/// nodes holding the image, summed, and mapped between 23MB and 1000MB per container.
#[test]
fn image_locality() {
    let cases = [
        (
            // node1: 40MB * 1/2 < 23MB: 0; node2: 100 * (250MB/2 - 23MB) / (2000MB - 23MB) = 5.
            "two images spread on two nodes, prefer the larger image one",
            images(&["gcr.io/40", "gcr.io/250"]).obj(),
            vec![node_40_300_2000("node1"), node_250_10("node2")],
            vec![0, 5],
        ),
        (
            // 100 * ((40MB + 300MB) / 2 - 23MB) / (2000MB - 23MB) = 7.
            "two images on one node, prefer this node",
            images(&["gcr.io/40", "gcr.io/300"]).obj(),
            vec![node_40_300_2000("node1"), node_250_10("node2")],
            vec![7, 0],
        ),
        (
            // 4000MB / 2 reaches 1000MB * 2: the maximum.
            "if exceed limit, use limit",
            images(&["gcr.io/10", "gcr.io/4000"]).obj(),
            vec![node_4000_30("node1"), node_250_10("node2")],
            vec![100, 0],
        ),
        (
            // 100 * (4000MB / 3 - 23MB) / (2000MB - 23MB) = 66.
            "if exceed limit, use limit (with node which has no images present)",
            images(&["gcr.io/10", "gcr.io/4000"]).obj(),
            vec![
                node_4000_30("node1"),
                node_250_10("node2"),
                node("node3").obj(),
            ],
            vec![66, 0, 0],
        ),
        (
            // node1: 600MB * 2/3 + 900MB * 2/3: 32; node2 adds 300MB * 1/3: 36.
            "pod with multiple large images, node2 is preferred",
            images(&["gcr.io/300", "gcr.io/600", "gcr.io/900"]).obj(),
            vec![
                node_600_40_900("node1"),
                node_300_600_900("node2"),
                node("node3").obj(),
            ],
            vec![32, 36, 0],
        ),
        (
            // node1: 30MB + 40MB * 1/2: 1; node2: 30MB: 0.
            "pod with multiple small images",
            images(&["gcr.io/30", "gcr.io/40"]).obj(),
            vec![node_20_30_40("node1"), node_4000_30("node2")],
            vec![1, 0],
        ),
        (
            // node1: the init container's 300MB * 1/2: 6; node2: 30MB * 1/2: 0.
            "include InitContainers: two images spread on two nodes, prefer the larger image one",
            images(&["gcr.io/30"]).init_image("gcr.io/300").obj(),
            vec![node_40_300_2000("node1"), node_20_30_40("node2")],
            vec![6, 0],
        ),
    ];
    for (name, pod, nodes, want) in cases {
        let plugin = ImageLocality::from_nodes(&nodes);
        let nodes = cluster(nodes, Vec::new());
        assert_eq!(score_all(&plugin, &pod, &nodes), want, "{name}");
    }
}

/// kube-scheduler's `TestNormalizedImageName`.
#[test]
fn normalized_image_names() {
    let digest = "root@sha256:4e2a3a7b9c6e1f4b2d8e9c0a1b3f5d7e9a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b";
    for (input, output) in [
        ("root", "root:latest"),
        ("gcr.io:5000/root", "gcr.io:5000/root:latest"),
        ("root:tag", "root:tag"),
        (digest, digest),
    ] {
        assert_eq!(normalized_image_name(input), output, "{input}");
    }
}

#[test]
fn spread_and_thresholds() {
    let plugin = ImageLocality::new(4, BTreeMap::from([("a:latest".to_string(), 2)]));
    assert_eq!(plugin.scaled_image_score("a:latest", 100 * MB), 50 * MB);
    // An image the counts do not know is on this node at least.
    assert_eq!(plugin.scaled_image_score("b:latest", 100 * MB), 25 * MB);
    assert_eq!(
        ImageLocality::default().scaled_image_score("a:latest", MB),
        0
    );

    assert_eq!(calculate_priority(0, 1), 0);
    assert_eq!(calculate_priority(1000 * MB, 1), 100);
    assert_eq!(calculate_priority(0, 0), 0);
}
