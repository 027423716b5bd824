//! Building an image on an engine from a `build:` context (issue 9): the context as a tar
//! stream made file by file from what the manifest read (never a folder on disk), the engine's
//! classic build API, the build's output to the log at debug level with its last lines kept
//! for an error, and the tag and registry push calls that ship the result.
//!
//! It builds what it is given and decides nothing: whether a build is needed, and where the
//! image goes, is `exec::build`'s choice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bollard::query_parameters::{BuildImageOptions, PushImageOptions, TagImageOptions};
use futures_util::StreamExt;

use super::{split_tag, DockerError, Engine};
use crate::model::spec::BuildInput;

/// How many of the build's last output lines an error carries.
pub const BUILD_ERROR_LINES: usize = 20;

/// A build that failed: why, and the last lines of its output.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub message: String,
    /// At most `BUILD_ERROR_LINES`, oldest first.
    pub last_lines: Vec<String>,
}

impl Engine {
    /// Builds `input` and tags it `input.tag` (and `input.tags`); the image ID on success.
    /// `no_cache` and `pull` add to what the build asks for (`pull_policy: always`).
    pub async fn build_image(
        &self,
        input: Arc<BuildInput>,
        no_cache: bool,
        pull: bool,
    ) -> Result<String, BuildError> {
        let options = BuildImageOptions {
            dockerfile: input.dockerfile.clone(),
            t: Some(input.tag.clone()),
            nocache: input.no_cache || no_cache,
            pull: (input.pull || pull).then(|| "1".to_string()),
            rm: true,
            forcerm: true,
            buildargs: (!input.args.is_empty()).then(|| {
                input
                    .args
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>()
            }),
            labels: (!input.labels.is_empty()).then(|| {
                input
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>()
            }),
            target: input.target.clone().unwrap_or_default(),
            platform: input.platform.clone().unwrap_or_default(),
            ..Default::default()
        };
        let body = bollard::body_stream(tar_stream(input.clone()));
        let mut lines: VecDeque<String> = VecDeque::new();
        let mut keep = |text: &str| {
            for l in text.lines() {
                let l = l.trim_end();
                if l.is_empty() {
                    continue;
                }
                tracing::debug!(host = %self.host, image = %input.tag, "build: {l}");
                if lines.len() == BUILD_ERROR_LINES {
                    lines.pop_front();
                }
                lines.push_back(l.to_string());
            }
        };
        let mut stream = self.docker.build_image(options, None, Some(body));
        let mut failure = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(s) = &info.stream {
                        keep(s);
                    }
                    if let Some(s) = &info.status {
                        keep(s);
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    keep(&error);
                    failure = Some(error);
                    break;
                }
                Err(e) => {
                    failure = Some(self.err("build", e).message);
                    break;
                }
            }
        }
        drop(stream);
        let last_lines: Vec<String> = lines.into_iter().collect();
        if let Some(message) = failure {
            return Err(BuildError {
                message: format!(
                    "the build of `{}` (context `{}`) failed on host `{}`: {message}",
                    input.tag, input.context, self.host
                ),
                last_lines,
            });
        }
        let id = match self.image_id(&input.tag).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return Err(BuildError {
                    message: format!(
                        "the build of `{}` ended without an image on host `{}`",
                        input.tag, self.host
                    ),
                    last_lines,
                })
            }
            Err(e) => {
                return Err(BuildError {
                    message: e.to_string(),
                    last_lines,
                })
            }
        };
        for t in &input.tags {
            self.tag_image(&input.tag, t)
                .await
                .map_err(|e| BuildError {
                    message: e.to_string(),
                    last_lines: Vec::new(),
                })?;
        }
        Ok(id)
    }

    /// Tags the image `source` as `target` (`docker tag`).
    pub async fn tag_image(&self, source: &str, target: &str) -> Result<(), DockerError> {
        let (repo, tag) = split_tag(target);
        self.docker
            .tag_image(
                source,
                Some(TagImageOptions {
                    repo: Some(repo.to_string()),
                    tag: Some(tag.to_string()),
                }),
            )
            .await
            .map_err(|e| self.err(format!("tag `{source}` as `{target}`"), e))
    }

    /// Pushes `image` to its registry (`docker push`).
    pub async fn push_to_registry(&self, image: &str) -> Result<(), DockerError> {
        let (name, tag) = split_tag(image);
        let mut stream = self.docker.push_image(
            name,
            Some(PushImageOptions {
                tag: Some(tag.to_string()),
                ..Default::default()
            }),
            None,
        );
        while let Some(item) = stream.next().await {
            item.map_err(|e| self.err(format!("push `{image}`"), e))?;
        }
        Ok(())
    }
}

/// The context as a tar stream: a header and the bytes of one file at a time, so no second
/// copy of the whole context is made.
fn tar_stream(
    input: Arc<BuildInput>,
) -> impl futures_util::Stream<Item = bytes::Bytes> + Send + 'static {
    let n = input.files.len();
    futures_util::stream::iter(0..=n).flat_map(move |i| {
        let chunks: Vec<bytes::Bytes> = if i == n {
            // Two empty blocks end the archive.
            vec![bytes::Bytes::from(vec![0u8; 1024])]
        } else {
            let (path, data) = &input.files[i];
            let mut out = tar_header(path, data.len() as u64);
            out.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            out.resize(out.len() + pad, 0);
            vec![bytes::Bytes::from(out)]
        };
        futures_util::stream::iter(chunks)
    })
}

/// The header block(s) of a regular file: ustar, with a PAX `path` record before it when the
/// path does not fit in 100 bytes. Mode 0644, owner root, time 0: the same context gives the
/// same archive.
pub fn tar_header(path: &str, size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    if path.len() > 100 {
        let record = pax_record("path", path);
        out.extend(ustar_block("././@PaxHeader", record.len() as u64, b'x'));
        out.extend_from_slice(record.as_bytes());
        let pad = (512 - record.len() % 512) % 512;
        out.resize(out.len() + pad, 0);
    }
    // Cut at 100 bytes when longer: the PAX record above says the whole path.
    out.extend(ustar_block(path, size, b'0'));
    out
}

/// `"<len> key=value\n"`, where the length counts itself.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

fn ustar_block(name: &str, size: u64, kind: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    let name = name.as_bytes();
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size);
    octal(&mut h, 136, 12, 0);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_ustar_with_a_checksum() {
        let h = tar_header("app/hello.txt", 6);
        assert_eq!(h.len(), 512);
        assert_eq!(&h[..13], b"app/hello.txt");
        assert_eq!(&h[124..136], b"00000000006\0");
        assert_eq!(&h[257..262], b"ustar");
        let mut copy = h.clone();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|&b| b as u32).sum();
        let written = std::str::from_utf8(&h[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(written, 8).unwrap(), sum);
    }

    #[test]
    fn long_paths_get_a_pax_record() {
        let long = format!("{}/file.txt", "d".repeat(120));
        let h = tar_header(&long, 1);
        assert_eq!(h.len(), 512 * 3);
        assert_eq!(h[156], b'x');
        let rec = std::str::from_utf8(&h[512..512 + 140]).unwrap();
        assert!(rec.contains(&format!(" path={long}\n")), "{rec}");
        let len: usize = rec.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(len, pax_record("path", &long).len());
        assert_eq!(h[1024 + 156], b'0');
    }
}
