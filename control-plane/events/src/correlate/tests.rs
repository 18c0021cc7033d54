use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;

fn at(seconds: i64) -> Timestamp {
    match Timestamp::from_second(1_800_000_000 + seconds) {
        Ok(time) => time,
        Err(error) => panic!("{error}"),
    }
}

fn pod(name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some("default".into()),
        name: Some(name.into()),
        uid: Some(uid.into()),
        resource_version: Some("7".into()),
        field_path: None,
    }
}

fn node(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid: Some("node-uid".into()),
        ..ObjectReference::default()
    }
}

fn failed(involved: &ObjectReference, message: &str) -> Request {
    Request::new(involved, EventType::Warning, "FailedScheduling", message)
}

fn created(decision: &Decision) -> &Event {
    match decision {
        Decision::Create(event) => event,
        other => panic!("expected a new Event, got {other:?}"),
    }
}

#[test]
fn a_first_event_is_created_with_kubes_fields() {
    let mut correlator = Correlator::new("default-scheduler");
    let request = failed(&pod("huge", "u1"), "0/3 nodes are available");
    let now = at(0) + SignedDuration::from_nanos(123);
    let (_, decision) = correlator.decide(&request, now);
    let event = created(&decision);
    let nanos = now.as_nanosecond();
    assert_eq!(
        event.metadata.name.as_deref(),
        Some(format!("huge.{nanos:x}").as_str())
    );
    assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(event.involved_object, pod("huge", "u1"));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reason.as_deref(), Some("FailedScheduling"));
    assert_eq!(event.message.as_deref(), Some("0/3 nodes are available"));
    let source = event.source.as_ref().and_then(|s| s.component.as_deref());
    assert_eq!(source, Some("default-scheduler"));
    assert_eq!(
        event.reporting_component.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(
        event.reporting_instance.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(event.count, Some(1));
    // Whole seconds, as metav1.Time writes them.
    assert_eq!(event.first_timestamp, Some(Time(at(0))));
    assert_eq!(event.last_timestamp, Some(Time(at(0))));
    let json = serde_json::to_value(event).expect("serializable");
    assert_eq!(json["firstTimestamp"], "2027-01-15T08:00:00Z");
}

#[test]
fn the_same_event_again_patches_count_and_last_timestamp() {
    let mut correlator = Correlator::new("default-scheduler");
    let request = failed(&pod("huge", "u1"), "0/3 nodes are available");
    let (key, first) = correlator.decide(&request, at(0));
    let name = created(&first).metadata.name.clone().unwrap_or_default();
    for (seconds, count) in [(5, 2), (65, 3), (600 + 65, 4)] {
        let (again, decision) = correlator.decide(&request, at(seconds));
        assert_eq!(again, key);
        assert_eq!(
            decision,
            Decision::Patch {
                namespace: "default".into(),
                name: name.clone(),
                count,
                last_timestamp: Time(at(seconds)),
            }
        );
    }
    assert_eq!(correlator.len(), 1);
}

#[test]
fn a_repeat_after_the_window_writes_a_new_event() {
    let mut correlator = Correlator::new("default-scheduler");
    let request = failed(&pod("huge", "u1"), "0/3 nodes are available");
    correlator.decide(&request, at(0));
    // Ten minutes to the second is still a repeat; one second more is not.
    let (_, within) = correlator.decide(&request, at(600));
    assert!(matches!(within, Decision::Patch { count: 2, .. }));
    let (_, after) = correlator.decide(&request, at(1201));
    let event = created(&after);
    assert_eq!(event.count, Some(1));
    assert_eq!(event.first_timestamp, Some(Time(at(1201))));
    // And that new Event is the one repeats patch from then on.
    let (_, next) = correlator.decide(&request, at(1202));
    match next {
        Decision::Patch { name, count, .. } => {
            assert_eq!(Some(name), event.metadata.name.clone());
            assert_eq!(count, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn anything_that_differs_makes_another_event() {
    let mut correlator = Correlator::new("replicaset-controller");
    let base = Request::new(
        &pod("web", "u1"),
        EventType::Normal,
        "SuccessfulCreate",
        "Created pod: web-1",
    );
    let mut variants = vec![
        Request::new(
            &pod("web", "u1"),
            EventType::Normal,
            "SuccessfulCreate",
            "Created pod: web-2",
        ),
        Request::new(
            &pod("web", "u1"),
            EventType::Warning,
            "SuccessfulCreate",
            "Created pod: web-1",
        ),
        Request::new(
            &pod("web", "u1"),
            EventType::Normal,
            "FailedCreate",
            "Created pod: web-1",
        ),
        // A namesake with another uid is another object.
        Request::new(
            &pod("web", "u2"),
            EventType::Normal,
            "SuccessfulCreate",
            "Created pod: web-1",
        ),
    ];
    let mut other_kind = pod("web", "u1");
    other_kind.kind = Some("ReplicaSet".into());
    variants.push(Request::new(
        &other_kind,
        EventType::Normal,
        "SuccessfulCreate",
        "Created pod: web-1",
    ));
    let (first, _) = correlator.decide(&base, at(0));
    for (i, variant) in variants.iter().enumerate() {
        let (key, decision) = correlator.decide(variant, at(1));
        assert_ne!(key, first, "variant {i}");
        created(&decision);
    }
    // Another component's recorder counts its own events.
    assert_ne!(Key::of("deployment-controller", &base), first);
}

#[test]
fn the_resource_version_does_not_make_another_event() {
    let mut correlator = Correlator::new("default-scheduler");
    let mut later = pod("huge", "u1");
    later.resource_version = Some("99".into());
    correlator.decide(&failed(&pod("huge", "u1"), "m"), at(0));
    let (_, decision) = correlator.decide(&failed(&later, "m"), at(1));
    assert!(matches!(decision, Decision::Patch { count: 2, .. }));
}

#[test]
fn a_forgotten_key_is_written_anew() {
    // What the writer does when a patch answers 404: the Event expired or was deleted.
    let mut correlator = Correlator::new("default-scheduler");
    let request = failed(&pod("huge", "u1"), "m");
    let (key, _) = correlator.decide(&request, at(0));
    correlator.forget(&key);
    assert!(correlator.is_empty());
    let (_, decision) = correlator.decide(&request, at(1));
    assert_eq!(created(&decision).count, Some(1));
}

#[test]
fn cluster_scoped_objects_have_their_events_in_default() {
    let mut correlator = Correlator::new("node-controller");
    let request = Request::new(
        &node("n1"),
        EventType::Normal,
        "NodeNotReady",
        "Node n1 status is now: NodeNotReady",
    );
    let (_, decision) = correlator.decide(&request, at(0));
    let event = created(&decision);
    assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(event.involved_object.namespace, None);
    let mut empty = node("n1");
    empty.namespace = Some(String::new());
    assert_eq!(event_namespace(&empty), "default");
    assert_eq!(event_namespace(&pod("p", "u")), "default");
    let mut elsewhere = pod("p", "u");
    elsewhere.namespace = Some("team-a".into());
    assert_eq!(event_namespace(&elsewhere), "team-a");
}

#[test]
fn names_are_the_object_and_hex_nanoseconds() {
    let now = at(0) + SignedDuration::from_nanos(5);
    let nanos = now.as_nanosecond();
    assert_eq!(event_name("web-7d9f", now), format!("web-7d9f.{nanos:x}"));
    assert!(is_dns_subdomain(&event_name("web-7d9f", now)));
}

#[test]
fn names_kubernetes_would_refuse_fall_back_to_valid_ones() {
    let now = at(0);
    let long = "a".repeat(250);
    let hostile = [
        "",
        long.as_str(),
        "Upper",
        "under_score",
        "-lead",
        "trail-",
        "a..b",
        "ünï",
        "x/y",
    ];
    let mut names = std::collections::HashSet::new();
    for involved in hostile {
        let name = event_name(involved, now);
        assert!(is_dns_subdomain(&name), "{involved:?} gave {name:?}");
        assert!(names.insert(name), "fallback names are unique");
    }
    assert!(is_dns_subdomain("a.b-c.d0"));
    assert!(!is_dns_subdomain(&"a".repeat(254)));
}

#[test]
fn messages_are_truncated_on_a_character_boundary() {
    assert_eq!(truncate("short", MESSAGE_LIMIT), "short");
    let exact = "x".repeat(MESSAGE_LIMIT);
    assert_eq!(truncate(&exact, MESSAGE_LIMIT), exact);
    // 1023 ASCII bytes, then a 3-byte character straddling the limit: it goes whole.
    let straddling = format!("{}€tail", "x".repeat(MESSAGE_LIMIT - 1));
    let cut = truncate(&straddling, MESSAGE_LIMIT);
    assert_eq!(cut.len(), MESSAGE_LIMIT - 1);
    assert!(cut.chars().all(|c| c == 'x'));
    // Every limit on a text of multi-byte characters gives valid UTF-8, never past it.
    let emoji = "🦀é€".repeat(400);
    for limit in 0..40 {
        let cut = truncate(&emoji, limit);
        assert!(cut.len() <= limit);
        assert!(emoji.starts_with(cut));
    }
    let request = Request::new(&pod("p", "u"), EventType::Warning, &"R".repeat(500), &emoji);
    assert!(request.message.len() <= MESSAGE_LIMIT);
    assert_eq!(request.reason.len(), REASON_LIMIT);
}

#[test]
fn the_cache_stays_bounded_and_evicts_the_least_recently_seen() {
    let mut correlator = Correlator::with_capacity("c", 3);
    let involved = pod("p", "u");
    let request = |n: usize| failed(&involved, &format!("message {n}"));
    for n in 0..3 {
        correlator.decide(&request(n), at(n as i64));
    }
    // Message 0 seen again: now 1 is the least recently seen.
    correlator.decide(&request(0), at(10));
    correlator.decide(&request(3), at(11));
    assert_eq!(correlator.len(), 3);
    assert!(matches!(
        correlator.decide(&request(0), at(12)).1,
        Decision::Patch { .. }
    ));
    assert!(matches!(
        correlator.decide(&request(1), at(13)).1,
        Decision::Create(_)
    ));
    // Once every key is past the window they all go at once.
    correlator.decide(&request(9), at(5000));
    assert_eq!(correlator.len(), 1);
}

#[test]
fn counts_saturate() {
    let mut correlator = Correlator::new("c");
    let request = failed(&pod("p", "u"), "m");
    let (key, _) = correlator.decide(&request, at(0));
    if let Some(seen) = correlator.seen.get_mut(&key) {
        seen.count = i32::MAX;
    }
    let (_, decision) = correlator.decide(&request, at(1));
    assert!(matches!(
        decision,
        Decision::Patch {
            count: i32::MAX,
            ..
        }
    ));
}

#[test]
fn an_object_gets_a_burst_of_writes_then_one_per_five_minutes() {
    let mut correlator = Correlator::new("default-scheduler");
    let request = failed(&pod("pending", "u1"), "0/5000 nodes are available");
    let decisions: Vec<Decision> = (0..100)
        .map(|n| correlator.decide(&request, at(n)).1)
        .collect();
    assert!(matches!(decisions[0], Decision::Create(_)));
    let patches = decisions
        .iter()
        .filter(|d| matches!(d, Decision::Patch { .. }))
        .count();
    assert_eq!(patches, crate::spam::BURST as usize - 1);
    assert!(decisions[25..].iter().all(|d| *d == Decision::Skip));
    // Five minutes after the burst began, one more write, carrying every sighting.
    match correlator.decide(&request, at(300)).1 {
        Decision::Patch { count, .. } => assert_eq!(count, 101),
        other => panic!("expected a patch, got {other:?}"),
    }
    assert_eq!(correlator.decide(&request, at(301)).1, Decision::Skip);
}

#[test]
fn the_limit_is_per_object_not_per_reason_or_message() {
    let mut correlator = Correlator::new("default-scheduler");
    let involved = pod("pending", "u1");
    for n in 0..25 {
        let decision = correlator
            .decide(&failed(&involved, &format!("try {n}")), at(0))
            .1;
        assert!(matches!(decision, Decision::Create(_)), "{n}: {decision:?}");
    }
    // New messages are new Events, but this object has had its share of writes.
    let other_reason = Request::new(&involved, EventType::Normal, "Scheduled", "bound");
    assert_eq!(correlator.decide(&other_reason, at(1)).1, Decision::Skip);
    // A skipped new event is not remembered: later it is created, not patched.
    let decision = correlator.decide(&other_reason, at(301)).1;
    assert!(matches!(decision, Decision::Create(_)), "{decision:?}");
    // Another object, and the same object in another component, are not held back.
    let other = failed(&pod("other", "u2"), "try 0");
    assert!(matches!(
        correlator.decide(&other, at(2)).1,
        Decision::Create(_)
    ));
    let mut controller = Correlator::new("replicaset-controller");
    let request = failed(&involved, "try 0");
    assert!(matches!(
        controller.decide(&request, at(2)).1,
        Decision::Create(_)
    ));
}
