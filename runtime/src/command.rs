//! What a container runs, by Kubernetes' rules: the command line from the pod's `command`
//! and `args` over the image's entrypoint and cmd, and the environment from the image, the
//! pod and the container.

use keel_api::Container;

use super::image::ImageConfig;

/// Kubernetes' rules: `command` replaces the entrypoint (and drops the image's cmd), `args`
/// replace the cmd.
pub fn resolve_argv(spec: &Container, image: &ImageConfig) -> Vec<String> {
    let entrypoint = if spec.command.is_empty() {
        image.entrypoint.clone().unwrap_or_default()
    } else {
        spec.command.clone()
    };
    let args = if !spec.args.is_empty() {
        spec.args.clone()
    } else if spec.command.is_empty() {
        image.cmd.clone().unwrap_or_default()
    } else {
        Vec::new()
    };
    entrypoint.into_iter().chain(args).collect()
}

/// The image's environment, then the pod's `HOSTNAME`, then the container's `env` (which
/// wins over both).
pub fn resolve_env(spec: &Container, image: &ImageConfig, pod: &keel_api::Pod) -> Vec<String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| {
        vars.retain(|(n, _)| n != name);
        vars.push((name.to_owned(), value.to_owned()));
    };
    for entry in image.env.clone().unwrap_or_default() {
        if let Some((name, value)) = entry.split_once('=') {
            set(name, value);
        }
    }
    let hostname = pod
        .spec
        .hostname
        .clone()
        .unwrap_or_else(|| pod.metadata.name.clone());
    set("HOSTNAME", &hostname);
    for var in &spec.env {
        set(&var.name, &var.value);
    }
    vars.into_iter().map(|(n, v)| format!("{n}={v}")).collect()
}

#[cfg(test)]
mod tests {
    use keel_api::pod::EnvVar;

    use super::*;

    fn container(command: &[&str], args: &[&str]) -> Container {
        let text = format!("name: c\nimage: busybox\ncommand: {command:?}\nargs: {args:?}\n");
        serde_yaml_ng::from_str(&text).expect("container")
    }

    #[test]
    fn command_and_args_follow_kubernetes() {
        let image = ImageConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default".into()]),
            ..Default::default()
        };
        assert_eq!(
            resolve_argv(&container(&[], &[]), &image),
            ["/entry", "default"]
        );
        assert_eq!(
            resolve_argv(&container(&[], &["x"]), &image),
            ["/entry", "x"]
        );
        assert_eq!(resolve_argv(&container(&["sh"], &[]), &image), ["sh"]);
        assert_eq!(
            resolve_argv(&container(&["sh"], &["-c", "true"]), &image),
            ["sh", "-c", "true"]
        );
    }

    #[test]
    fn container_env_wins() {
        let image = ImageConfig {
            env: Some(vec!["PATH=/bin".into(), "MODE=image".into()]),
            ..Default::default()
        };
        let mut spec = container(&[], &[]);
        spec.env = vec![EnvVar {
            name: "MODE".into(),
            value: "pod".into(),
        }];
        let pod: keel_api::Pod = serde_yaml_ng::from_str(
            "metadata: {name: web}\nspec: {containers: [{name: c, image: busybox}]}\n",
        )
        .expect("pod");
        let env = resolve_env(&spec, &image, &pod);
        assert_eq!(env, ["PATH=/bin", "HOSTNAME=web", "MODE=pod"]);
    }
}
