"""The official Kubernetes Python client (PyPI `kubernetes`, nobody here wrote it) against keel.

Run by control-plane/tests/python_client.rs with the venv of `cargo xtask setup`:
    python client_session.py KUBECONFIG
Lists, creates, patches (merge and strategic), watches with resourceVersion resumption, and
reads a 410 for an expired version. Every check raises on failure; the last line is "ok".
"""

import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    ns = "py"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    print("created namespace", ns)

    # create, get, list with a label selector
    for i in range(3):
        core.create_namespaced_config_map(
            ns,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=f"cm-{i}", labels={"idx": str(i), "app": "py"}),
                data={"n": str(i)},
            ),
        )
    listed = core.list_namespaced_config_map(ns, label_selector="app=py,idx!=1")
    names = sorted(item.metadata.name for item in listed.items)
    print("listed", names, "at resourceVersion", listed.metadata.resource_version)
    check(names == ["cm-0", "cm-2"], f"label selector: {names}")

    # a typed object round-trips every field, including ones keel does not act on
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="api", labels={"app": "api"}),
        spec=client.V1DeploymentSpec(
            replicas=1,
            min_ready_seconds=7,
            selector=client.V1LabelSelector(match_labels={"app": "api"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "api"}),
                spec=client.V1PodSpec(
                    priority_class_name="high",
                    containers=[client.V1Container(name="api", image="busybox:1.36", stdin=True)],
                ),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(ns, deployment)
    check(created.spec.min_ready_seconds == 7, "minReadySeconds kept")
    check(created.spec.template.spec.priority_class_name == "high", "priorityClassName kept")
    check(created.spec.template.spec.containers[0].stdin is True, "stdin kept")
    check(created.metadata.generation == 1 and created.metadata.uid, "server-owned metadata set")

    # patches: strategic (the client's default for a dict body) and JSON merge
    patched = apps.patch_namespaced_deployment(
        "api", ns, {"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "busybox:1.37"}]}}}}
    )
    check(patched.spec.template.spec.containers[0].image == "busybox:1.37", "strategic patch applied")
    check(patched.spec.template.spec.containers[0].stdin is True, "strategic patch merged by name")
    check(patched.metadata.generation == 2, f"generation {patched.metadata.generation}")
    print("patched deployment to generation", patched.metadata.generation)

    # conflict on a stale resourceVersion
    stale = core.read_namespaced_config_map("cm-0", ns)
    core.patch_namespaced_config_map("cm-0", ns, {"data": {"n": "changed"}})
    stale.data = {"n": "stale write"}
    try:
        core.replace_namespaced_config_map("cm-0", ns, stale)
        raise AssertionError("a stale update was accepted")
    except ApiException as e:
        check(e.status == 409, f"stale update: {e.status}")
        print("stale update refused with", e.status, e.reason)

    # watch from the list's resourceVersion; then resume from the last event seen
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    seen = []

    def watcher():
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name, event["object"].metadata.resource_version))
            if len(seen) == 2:
                w.stop()

    thread = threading.Thread(target=watcher)
    thread.start()
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w-1")))
    core.delete_namespaced_config_map("cm-2", ns)
    thread.join(timeout=15)
    print("watched", seen)
    check([(t, n) for t, n, _ in seen] == [("ADDED", "w-1"), ("DELETED", "cm-2")], f"watch events: {seen}")

    last = seen[-1][2]
    core.patch_namespaced_config_map("w-1", ns, {"data": {"k": "v"}})
    resumed = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, ns, resource_version=last, timeout_seconds=5):
        resumed.append((event["type"], event["object"].metadata.name))
        w.stop()
    print("resumed from", last, "and saw", resumed)
    check(resumed == [("MODIFIED", "w-1")], f"resumed watch: {resumed}")

    # an expired resourceVersion: 410 inside the stream (the watch cache was started small)
    try:
        for event in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version="1", timeout_seconds=5):
            raise AssertionError(f"an expired version streamed {event['type']}")
        raise AssertionError("an expired version got no error")
    except ApiException as e:
        check(e.status == 410, f"expired watch: {e.status}")
        print("expired resourceVersion answered", e.status, e.reason)

    # delete the namespace: it is Terminating at once, takes no new content, and goes (with
    # everything in it) once the namespace controller has emptied and finalized it
    core.delete_namespace(ns)
    phase = core.read_namespace(ns).status.phase
    check(phase == "Terminating", f"phase after delete: {phase}")
    try:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="late")))
        raise AssertionError("a terminating namespace took new content")
    except ApiException as e:
        check(e.status == 403 and "being terminated" in e.body, f"create in terminating namespace: {e.status} {e.body}")
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespace(ns)
        except ApiException as e:
            check(e.status == 404, f"reading the deleted namespace: {e.status}")
            break
        check(time.monotonic() < deadline, "the namespace was not gone within 30 s")
        time.sleep(0.2)
    check(core.list_config_map_for_all_namespaces(label_selector="app=py").items == [], "namespace emptied")
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
