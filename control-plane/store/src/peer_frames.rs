//! Length-prefixed frames on a byte stream: what the replication link between members is made
//! of. A frame is a 4-byte big-endian length and that many bytes of postcard.
//!
//! The length comes from the other member, so it is not trusted: a frame longer than the
//! limit is refused before anything is read into memory, and a frame's buffer grows with the
//! bytes that actually arrive, never to a length the sender only claimed.

use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended inside a frame: the sender went away mid-message.
    #[error("the peer's stream ended inside a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("a peer frame of {len} bytes is over the {limit}-byte limit")]
    TooLong { len: usize, limit: usize },
    #[error("undecodable peer message: {0}")]
    Undecodable(#[from] postcard::Error),
    #[error("reading from the peer: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// Whether the frame was there and wrong — what the receiver refuses, and says so —
    /// rather than a connection that broke.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            FrameError::TooLong { .. } | FrameError::Undecodable(_)
        )
    }
}

/// Appends one frame holding `value` to `out`.
pub fn put<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    // Every type sent here serializes infallibly (plain data, no maps with non-string keys);
    // a failure would leave an empty frame, which the receiver refuses as undecodable.
    if postcard::to_io(value, &mut *out).is_err() {
        out.truncate(start + 4);
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Reads the next frame's bytes: `None` at a clean end of the stream (between frames).
pub async fn read_raw<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        let n = reader.read(&mut header[got..]).await?;
        if n == 0 {
            return match got {
                0 => Ok(None),
                _ => Err(FrameError::Truncated { got, want: 4 }),
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > limit {
        return Err(FrameError::TooLong { len, limit });
    }
    // Grown as bytes arrive: a sender claiming a large frame and sending little costs little.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let read = (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if read < len {
        return Err(FrameError::Truncated {
            got: read,
            want: len,
        });
    }
    Ok(Some(body))
}

/// Reads and decodes the next frame: `None` at a clean end of the stream.
pub async fn read<T: DeserializeOwned, R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<T>, FrameError> {
    match read_raw(reader, limit).await? {
        Some(body) => Ok(Some(postcard::from_bytes(&body)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &[u8], limit: usize) -> (Vec<(u64, String)>, Option<FrameError>) {
        let mut reader = bytes;
        let mut values = Vec::new();
        loop {
            match read::<(u64, String), _>(&mut reader, limit).await {
                Ok(Some(v)) => values.push(v),
                Ok(None) => return (values, None),
                Err(e) => return (values, Some(e)),
            }
        }
    }

    #[tokio::test]
    async fn frames_come_back_in_order_and_end_cleanly_between_frames() {
        let mut out = Vec::new();
        put(&mut out, &(1u64, "one".to_owned()));
        put(&mut out, &(2u64, String::new()));
        put(&mut out, &(3u64, "x".repeat(70_000)));
        let (values, error) = read_all(&out, 1 << 20).await;
        assert!(error.is_none(), "{error:?}");
        let keys: Vec<u64> = values.iter().map(|v| v.0).collect();
        assert_eq!(keys, vec![1, 2, 3]);
        assert_eq!(values[2].1.len(), 70_000);
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_header_or_a_body_is_truncated_not_a_clean_end() {
        let mut out = Vec::new();
        put(&mut out, &(1u64, "one".to_owned()));
        put(&mut out, &(2u64, "two".to_owned()));
        let second = out.len() - 8;
        for cut in [out.len() - 1, second + 2] {
            let (values, error) = read_all(&out[..cut], 1 << 20).await;
            assert_eq!(values.len(), 1, "cut at {cut}");
            let error = error.expect("a truncated frame is an error");
            assert!(matches!(error, FrameError::Truncated { .. }), "{error:?}");
            assert!(!error.is_refusal());
        }
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_before_its_body_is_read() {
        // A header claiming 4 GiB, and no body: refused at the header.
        let bytes = [0xff, 0xff, 0xff, 0xff];
        let (values, error) = read_all(&bytes, 1 << 20).await;
        assert!(values.is_empty());
        let error = error.expect("refused");
        assert!(error.is_refusal());
        assert_eq!(
            error.to_string(),
            format!(
                "a peer frame of {} bytes is over the 1048576-byte limit",
                u32::MAX
            )
        );
    }

    #[tokio::test]
    async fn a_frame_claiming_more_than_it_sends_allocates_what_it_sent() {
        // 1 GiB claimed under a 2 GiB limit, 10 bytes sent, then the stream ends.
        let mut bytes = (1u32 << 30).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[7; 10]);
        let mut reader = &bytes[..];
        let error = read_raw(&mut reader, 2 << 30).await.expect_err("truncated");
        assert!(
            matches!(error, FrameError::Truncated { got: 10, want } if want == 1 << 30),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn garbage_inside_a_well_formed_frame_is_refused_as_undecodable() {
        let mut bytes = 3u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        let (values, error) = read_all(&bytes, 1 << 20).await;
        assert!(values.is_empty());
        let error = error.expect("refused");
        assert!(error.is_refusal());
        assert!(
            error.to_string().starts_with("undecodable peer message"),
            "{error}"
        );
    }
}
