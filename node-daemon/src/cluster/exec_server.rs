//! `GET /exec/{namespace}/{pod}/{container}` on the node's endpoint: `kubectl exec`, as the
//! kubelet serves it behind the API server's `pods/exec` proxy. The request is a WebSocket
//! upgrade speaking Kubernetes' channel protocol (`v5.channel.k8s.io`, else
//! `v4.channel.k8s.io`): every binary message starts with its stream — 0 stdin, 1 stdout,
//! 2 stderr, 3 the error stream (one `Status` when the command ends), 4 terminal resizes —
//! and in v5, `255 0` closes stdin.
//!
//! The command runs through `node-daemon exec` (the container's namespaces, cgroups, user and
//! capabilities, as exec probes do), a child process killed when the stream goes. Its exit
//! is reported as kube does: `Success`, or `NonZeroExitCode` with the code, which kubectl exits
//! with. With `tty`, the command's stdin, stdout and stderr are one pseudo-terminal: what the
//! client types goes to it, what it prints comes back on stdout, and stream 4's
//! `{"Width":…,"Height":…}` resizes it.

use std::{
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hyper::{body::Incoming, Request, Response};
use serde_json::json;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};
use tokio_tungstenite::{
    tungstenite::{
        handshake::derive_accept_key,
        protocol::{frame::coding::CloseCode, CloseFrame, Role},
        Message,
    },
    WebSocketStream,
};

use super::endpoint_reply::{text, Body};

/// The subprotocols served, most preferred first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: a message `[CLOSE, stream]` closes that stream.
const CLOSE: u8 = 255;
/// How long the output of a command that exited may still take to drain (a background
/// process keeping the pipes open must not hold the stream forever).
const DRAIN: Duration = Duration::from_secs(2);
/// How long the client may take to answer the close once the verdict is sent.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);
/// How much of stdout/stderr one message carries.
const CHUNK: usize = 32 * 1024;

/// What `kubectl exec` asked for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn options(query: &str) -> Options {
    let mut options = Options::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let on = matches!(value.as_ref(), "true" | "1");
        match key.as_ref() {
            "command" => options.command.push(value.into_owned()),
            "stdin" => options.stdin = on,
            "stdout" => options.stdout = on,
            "stderr" => options.stderr = on,
            "tty" => options.tty = on,
            _ => {}
        }
    }
    options
}

/// The subprotocol to speak: the first of the client's list that keel serves.
fn choose_protocol(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    PROTOCOLS.into_iter().find(|p| offered.contains(p))
}

/// Answers the upgrade (or refuses it) and runs the command on the upgraded connection.
pub fn answer(
    mut request: Request<Incoming>,
    state_dir: &Path,
    (namespace, pod, container): (&str, &str, &str),
) -> Response<Body> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if !header("upgrade").eq_ignore_ascii_case("websocket")
        || header("sec-websocket-version") != "13"
    {
        return text(400, "exec is served over WebSocket (version 13) only\n");
    }
    let key = header("sec-websocket-key");
    if key.is_empty() {
        return text(400, "no Sec-WebSocket-Key\n");
    }
    let Some(protocol) = choose_protocol(&header("sec-websocket-protocol")) else {
        return text(
            400,
            format!(
                "no subprotocol keel serves was offered; keel speaks {}\n",
                PROTOCOLS.join(", ")
            ),
        );
    };
    let options = options(request.uri().query().unwrap_or(""));
    if options.command.is_empty() {
        return text(400, "you must specify at least 1 command\n");
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    let command = ExecCommand {
        state_dir: state_dir.to_owned(),
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        container: container.to_owned(),
        options,
        v5: protocol == PROTOCOLS[0],
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "exec: the upgrade failed");
                return;
            }
        };
        let socket = WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        command.run(socket).await;
    });
    let mut response = text(101, "");
    let headers = response.headers_mut();
    for (name, value) in [
        ("upgrade", "websocket".to_owned()),
        ("connection", "Upgrade".to_owned()),
        ("sec-websocket-accept", derive_accept_key(key.as_bytes())),
        ("sec-websocket-protocol", protocol.to_owned()),
    ] {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    response
}

struct ExecCommand {
    state_dir: PathBuf,
    namespace: String,
    pod: String,
    container: String,
    options: Options,
    v5: bool,
}

impl ExecCommand {
    async fn run<S>(self, socket: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, mut incoming) = socket.split();
        let spawned = self.spawn();
        let (mut child, terminal) = match spawned {
            Ok(spawned) => spawned,
            Err(error) => {
                let status = failure(&format!("cannot run the command: {error}"));
                end_with(sink, incoming, &status).await;
                return;
            }
        };
        // Output to the client, through one channel so that one task owns the sink.
        let (out, mut out_rx) = mpsc::channel::<Message>(16);
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(pump(stdout, STDOUT, out.clone())));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(pump(stderr, STDERR, out.clone())));
        }
        // With a terminal, its output is the command's stdout and stderr both.
        let mut terminal_input = None;
        if let Some(master) = &terminal {
            match (master.try_clone(), master.try_clone()) {
                (Ok(reader), Ok(writer)) => {
                    let reader = tokio::fs::File::from_std(std::fs::File::from(reader));
                    readers.push(tokio::spawn(pump(reader, STDOUT, out.clone())));
                    terminal_input = Some(tokio::fs::File::from_std(std::fs::File::from(writer)));
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "exec: the terminal");
                }
            }
        }
        drop(out);
        let mut stdin = child.stdin.take();
        let exit = loop {
            tokio::select! {
                status = child.wait() => break status,
                Some(message) = out_rx.recv() => {
                    if sink.send(message).await.is_err() {
                        // The client is gone: so is the command (killed on drop).
                        return;
                    }
                }
                message = incoming.next() => match message {
                    Some(Ok(Message::Binary(data))) => match data.split_first() {
                        Some((&STDIN, bytes)) => {
                            if let Some(pipe) = stdin.as_mut() {
                                if pipe.write_all(bytes).await.is_err() {
                                    stdin = None;
                                }
                            }
                            if let Some(input) = terminal_input.as_mut() {
                                if input.write_all(bytes).await.is_err() || input.flush().await.is_err() {
                                    terminal_input = None;
                                }
                            }
                        }
                        Some((&CLOSE, [STDIN])) if self.v5 => stdin = None,
                        Some((&RESIZE, size)) => {
                            if let Some(master) = &terminal {
                                resize(master, size);
                            }
                        }
                        Some((&CLOSE, _)) | None => {}
                        Some((stream, _)) => tracing::debug!(stream, "exec: a message for an unknown stream"),
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
            }
        };
        drop(stdin);
        drop(terminal_input);
        // The rest of the output (the terminal's reader ends with EIO once the command and
        // its children are gone), then the verdict.
        let drained = async {
            while let Some(message) = out_rx.recv().await {
                if sink.send(message).await.is_err() {
                    return false;
                }
            }
            true
        };
        if !tokio::time::timeout(DRAIN, drained).await.unwrap_or(false) {
            for reader in &readers {
                reader.abort();
            }
        }
        let status = match exit {
            Ok(status) => match status.code() {
                Some(0) => json!({"metadata": {}, "status": "Success"}).to_string(),
                Some(code) => non_zero(&self.options.command, code),
                None => non_zero(&self.options.command, 137),
            },
            Err(error) => failure(&format!("waiting for the command: {error}")),
        };
        end_with(sink, incoming, &status).await;
    }
}

/// Sends the verdict on the error stream and closes, with the closing handshake: it reads on
/// until the client answers the close. Dropping the socket with the client's late messages
/// unread (kubectl -t sends a resize or its terminal's EOF as the command exits) makes the
/// kernel reset the connection, and the reset can overtake the verdict and the close in the
/// API server's proxy: kubectl then fails with "close 1006 (abnormal closure)" after a
/// command that succeeded (seen once in CI).
async fn end_with<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut incoming: SplitStream<WebSocketStream<S>>,
    status: &str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = sink.send(frame(ERROR, status.as_bytes())).await;
    let _ = sink.send(normal_close()).await;
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(message)) = incoming.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    let _ = sink.close().await;
}

/// A close with status 1000: client-go reads it as the end of every stream, where a close
/// without a status (1005) is an error ("error reading from error stream").
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

impl ExecCommand {
    /// Starts `node-daemon exec` for the command; with `tty`, on a new pseudo-terminal whose
    /// master end is returned.
    fn spawn(&self) -> std::io::Result<(tokio::process::Child, Option<OwnedFd>)> {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("node-daemon"));
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("exec")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args([
                "-n",
                &self.namespace,
                "-c",
                &self.container,
                &self.pod,
                "--",
            ])
            .args(&self.options.command)
            .kill_on_drop(true);
        if self.options.tty {
            let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
            let slave = pty.slave;
            command
                .stdin(Stdio::from(slave.try_clone()?))
                .stdout(Stdio::from(slave.try_clone()?))
                .stderr(Stdio::from(slave));
            let child = command.spawn()?;
            // The daemon's copies of the slave end go with `command`: only the command keeps
            // the terminal open, so its exit ends the master's output.
            drop(command);
            return Ok((child, Some(pty.master)));
        }
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        command
            .stdin(piped(self.options.stdin))
            .stdout(piped(self.options.stdout))
            .stderr(piped(self.options.stderr));
        Ok((command.spawn()?, None))
    }
}

/// A terminal size message of stream 4 (`{"Width":80,"Height":24}`) applied to the terminal.
fn resize(master: &OwnedFd, message: &[u8]) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let Ok(size) = serde_json::from_slice::<Size>(message) else {
        return;
    };
    let window = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &window) };
}

/// Copies a pipe of the command to the client, as messages of `stream`.
async fn pump(mut pipe: impl AsyncRead + Unpin, stream: u8, out: mpsc::Sender<Message>) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(frame(stream, &buffer[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn frame(stream: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(stream);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// kube's Status for a command that exited with `code` (kubectl exits with it).
fn non_zero(command: &[String], code: i32) -> String {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
    .to_string()
}

fn failure(message: &str) -> String {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_as_kubectl_sends_them() {
        let options = options(
            "command=sh&command=-c&command=echo+a%26b&stdin=true&stdout=true&stderr=false&tty=1",
        );
        assert_eq!(
            options,
            Options {
                command: vec!["sh".into(), "-c".into(), "echo a&b".into()],
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true,
            }
        );
        assert_eq!(super::options("").command, Vec::<String>::new());
    }

    #[test]
    fn the_newest_protocol_offered_is_spoken() {
        assert_eq!(
            choose_protocol("v5.channel.k8s.io, v4.channel.k8s.io"),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(
            choose_protocol("v4.channel.k8s.io,channel.k8s.io"),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(choose_protocol("base64.channel.k8s.io"), None);
        assert_eq!(choose_protocol(""), None);
    }

    #[test]
    fn exit_codes_are_reported_as_kubectl_reads_them() {
        let status: serde_json::Value =
            serde_json::from_str(&non_zero(&["sh".into(), "-c".into(), "exit 3".into()], 3))
                .expect("json");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(
            status["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
        assert_eq!(
            frame(STDOUT, b"hi"),
            Message::Binary(Bytes::from_static(b"\x01hi"))
        );
    }
}
