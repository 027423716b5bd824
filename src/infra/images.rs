//! Images without a registry: copy an image from the local engine to a host's engine as a
//! stream (`save` here, over the host's connection, `load` there).
//!
//! Image IDs are compared, not tags: a host that has the same ID under the tag is skipped, and
//! a different image under the same tag is sent. Nothing is buffered whole in memory or on
//! disk. This module moves bytes between engines; which hosts need what is the caller's choice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::infra::docker::{DockerError, Engine};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The host already had this image ID under the tag.
    Present,
    /// Sent; the number of bytes streamed.
    Sent { bytes: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("image `{image}` is not on the local engine")]
    NotLocal { image: String },
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("image `{image}` loaded on host `{host}` but it has ID {got}, not {want}")]
    Mismatch {
        image: String,
        host: String,
        got: String,
        want: String,
    },
}

/// Copies `image` from `local` to `target` unless `target` already has the same image ID.
pub async fn push_image(
    local: &Engine,
    target: &Engine,
    host: &str,
    image: &str,
) -> Result<PushOutcome, PushError> {
    let want = local
        .image_id(image)
        .await?
        .ok_or_else(|| PushError::NotLocal {
            image: image.to_string(),
        })?;
    if target.image_id(image).await?.as_deref() == Some(want.as_str()) {
        return Ok(PushOutcome::Present);
    }
    let counter = Arc::new(AtomicU64::new(0));
    target
        .load_image(local.save_image(image, counter.clone()), image)
        .await?;
    let got = target.image_id(image).await?.unwrap_or_default();
    if got != want {
        return Err(PushError::Mismatch {
            image: image.to_string(),
            host: host.to_string(),
            got,
            want,
        });
    }
    Ok(PushOutcome::Sent {
        bytes: counter.load(Ordering::Relaxed),
    })
}
