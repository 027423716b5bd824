//! A `RepoTree` that decrypts the SOPS files of the stacks as they are read: the Compose
//! files, their `.env` and env files all come through it, so every reader of the manifest sees
//! plaintext without knowing about SOPS, and the values that were encrypted are collected to be
//! masked as secrets.
//!
//! Pure: it reads through the tree it wraps and gets data keys from the `KeySource` it is given.
//! A decrypted file is kept in memory for the rest of the load (one decryption per file, however
//! many readers ask); nothing is written anywhere. `convoy.yaml` is passed through untouched:
//! the fleet file says where hosts are and is never a secret.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::{decrypt_if_encrypted, KeySource};
use crate::model::tree::{DirEntry, RepoTree};

pub struct DecryptingTree<'a> {
    inner: &'a dyn RepoTree,
    keys: &'a dyn KeySource,
    /// Files decrypted (or that failed to), by path.
    opened: RefCell<BTreeMap<String, Result<Vec<u8>, String>>>,
    secrets: RefCell<BTreeSet<String>>,
    /// The files among `opened` that were SOPS dotenv files (kept line for line by `read`).
    dotenv: RefCell<BTreeSet<String>>,
}

impl<'a> DecryptingTree<'a> {
    pub fn new(inner: &'a dyn RepoTree, keys: &'a dyn KeySource) -> DecryptingTree<'a> {
        DecryptingTree {
            inner,
            keys,
            opened: RefCell::default(),
            secrets: RefCell::default(),
            dotenv: RefCell::default(),
        }
    }

    /// Every value that was encrypted in a file read so far.
    pub fn secrets(&self) -> BTreeSet<String> {
        self.secrets.borrow().clone()
    }
}

impl RepoTree for DecryptingTree<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        if path == crate::manifest::FLEET_FILE {
            return self.inner.read(path);
        }
        if let Some(done) = self.opened.borrow().get(path) {
            return done.clone().map(Some);
        }
        let Some(bytes) = self.inner.read(path)? else {
            return Ok(None);
        };
        let result = match decrypt_if_encrypted(path, &bytes, self.keys) {
            Ok(None) => return Ok(Some(bytes)),
            Ok(Some(d)) => {
                self.secrets.borrow_mut().extend(d.secrets);
                if d.format == super::Format::Dotenv {
                    self.dotenv.borrow_mut().insert(path.to_string());
                }
                Ok(d.bytes)
            }
            // Every reader names the file it reads: the message says the rest.
            Err(e) if e.line > 0 => Err(format!(
                "line {}: cannot decrypt with SOPS: {}",
                e.line, e.message
            )),
            Err(e) => Err(format!("cannot decrypt with SOPS: {}", e.message)),
        };
        self.opened
            .borrow_mut()
            .insert(path.to_string(), result.clone());
        result.map(Some)
    }

    /// A dotenv file as `sops --decrypt` prints it: a secret or config made of it holds what
    /// its author sees with `sops -d`, not the line-kept text the env-file reader gets.
    fn read_whole(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        let bytes = self.read(path)?;
        if self.dotenv.borrow().contains(path) {
            return Ok(bytes.map(|b| super::dotenv::as_printed(&b)));
        }
        Ok(bytes)
    }

    /// Shipped as stored: bind mounts and build contexts get the encrypted bytes.
    fn read_raw(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        self.inner.read_raw(path)
    }

    fn list(&self, dir: &str) -> Result<Vec<DirEntry>, String> {
        self.inner.list(dir)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
