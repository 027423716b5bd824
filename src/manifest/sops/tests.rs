//! Decryption of files made by the real `sops` (its own test fixtures, `tests/fixtures/sops/`),
//! with their data keys opened by the `age` crate from the age test identity published in
//! SOPS's `age/keysource_test.go`. The PGP-encrypted originals are opened through gpg in
//! `infra::sops_keys`'s tests.

use std::collections::BTreeMap;
use std::io::Read;
use std::str::FromStr;

use super::*;
use crate::manifest::yaml::{self, Kind, Node};

/// SOPS's `mockIdentity` (age/keysource_test.go), a published test key.
const AGE_IDENTITY: &str =
    "AGE-SECRET-KEY-1G0Q5K9TV4REQ3ZSQRMTMG8NSWQGYT0T7TZ33RAZEE0GZYVZN0APSU24RK7";
const AGE_RECIPIENT: &str = "age1lzd99uklcjnc0e7d860axevet2cz99ce9pq6tzuzd05l5nr28ams36nvun";

const EXAMPLE_AGE_YAML: &str = include_str!("../../../tests/fixtures/sops/example.age.yaml");
const FORMAT_AGE_ENV: &str = include_str!("../../../tests/fixtures/sops/format.age.env");

/// Opens age-encrypted data keys with one identity, in memory.
struct AgeKeys(age::x25519::Identity);

impl AgeKeys {
    fn test() -> AgeKeys {
        AgeKeys(age::x25519::Identity::from_str(AGE_IDENTITY).unwrap())
    }
}

impl KeySource for AgeKeys {
    fn data_key(&self, keys: &[MasterKey]) -> Result<DataKey, String> {
        for k in keys {
            if let MasterKey::Age { enc, .. } = k {
                let d = age::Decryptor::new_buffered(std::io::BufReader::new(
                    age::armor::ArmoredReader::new(enc.as_bytes()),
                ))
                .map_err(|e| e.to_string())?;
                let mut r = d
                    .decrypt(std::iter::once(&self.0 as &dyn age::Identity))
                    .map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                r.read_to_end(&mut out).map_err(|e| e.to_string())?;
                let key: [u8; 32] = out.try_into().map_err(|_| "not 32 bytes")?;
                return Ok(zeroize::Zeroizing::new(key));
            }
        }
        Err("no age key".into())
    }
}

fn get<'n>(node: &'n Node, path: &[&str]) -> &'n Node {
    let mut n = node;
    for p in path {
        let Kind::Map(entries) = &n.kind else {
            panic!("not a map at {p}")
        };
        n = &entries
            .iter()
            .find(|(k, _)| k.scalar() == Some(p))
            .unwrap()
            .1;
    }
    n
}

fn open(path: &str, text: &str) -> Result<Option<Decrypted>, SopsError> {
    decrypt_if_encrypted(path, text.as_bytes(), &AgeKeys::test())
}

#[test]
fn a_yaml_file_made_by_sops_decrypts_with_its_types_and_lines() {
    let d = open("stacks/web/secrets.yaml", EXAMPLE_AGE_YAML)
        .unwrap()
        .expect("encrypted");
    let text = String::from_utf8(d.bytes).unwrap();
    let (root, issues) = yaml::parse(&text);
    assert!(issues.is_empty(), "{issues:?}\n{text}");
    let root = root.unwrap();
    assert_eq!(
        get(&root, &["myapp1"]).scalar(),
        Some("t00m4nys3cr3tzupdated")
    );
    assert_eq!(get(&root, &["app2", "db", "user"]).scalar(), Some("eve"));
    assert_eq!(
        get(&root, &["app2", "db", "password"]).scalar(),
        Some("c4r1b0u")
    );
    assert_eq!(get(&root, &["number"]).as_int(), Some(1234568000));
    let Kind::Seq(bools) = &get(&root, &["somebooleans"]).kind else {
        panic!()
    };
    assert_eq!(bools[0].as_bool(), Some(true));
    assert_eq!(bools[1].as_bool(), Some(false));
    let Kind::Seq(items) = &get(&root, &["an_array"]).kind else {
        panic!()
    };
    assert_eq!(items[0].scalar(), Some("secretuser1"));
    // Values left in clear stay as written; the `sops` section is gone.
    assert_eq!(
        get(&root, &["nested_unencrypted", "this", "is", "all"]).scalar(),
        Some("going to remain in clear text")
    );
    let Kind::Map(top) = &root.kind else { panic!() };
    assert!(top.iter().all(|(k, _)| k.scalar() != Some("sops")));
    // Every value keeps its line: errors found later point into the encrypted file.
    assert_eq!(text.lines().count(), EXAMPLE_AGE_YAML.lines().count());
    assert_eq!(get(&root, &["number"]).line, 8);
    // The encrypted values are the secrets; those in clear are not.
    assert!(d.secrets.contains(&"c4r1b0u".to_string()));
    assert!(!d.secrets.iter().any(|s| s.contains("clear text")));
}

#[test]
fn a_dotenv_file_made_by_sops_decrypts_line_for_line() {
    let d = open("stacks/web/app.env", FORMAT_AGE_ENV).unwrap().unwrap();
    let text = String::from_utf8(d.bytes).unwrap();
    // SOPS splits at the first `=`: the key is `foo ` and the value ` bar`, kept as written.
    assert_eq!(text.lines().next(), Some("foo = bar"));
    assert!(!text.contains("sops_"), "{text}");
    assert_eq!(text.split('\n').count(), FORMAT_AGE_ENV.split('\n').count());
    assert_eq!(d.secrets, vec![" bar".to_string()]);
    assert_eq!(d.format, Format::Dotenv);
}

#[test]
fn a_changed_ciphertext_is_a_located_error_without_the_value() {
    // One byte of `password`'s ciphertext (line 5) flipped.
    let line = EXAMPLE_AGE_YAML.lines().nth(4).unwrap();
    assert!(line.contains("password: ENC[AES256_GCM,data:8"));
    let tampered = EXAMPLE_AGE_YAML.replacen("data:8Ll+", "data:9Ll+", 1);
    let e = open("stacks/web/secrets.yaml", &tampered).unwrap_err();
    assert_eq!(e.file, "stacks/web/secrets.yaml");
    assert_eq!(e.line, 5);
    assert!(e.message.contains("app2.db.password"), "{e}");
    assert!(!e.to_string().contains("c4r1b0u"));
}

#[test]
fn reordered_values_fail_the_mac() {
    // List items share their list's key path, so each still opens: only the MAC sees the swap.
    let lines: Vec<&str> = EXAMPLE_AGE_YAML.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("an_array:"))
        .unwrap();
    let mut swapped = lines.clone();
    swapped.swap(i + 1, i + 2);
    let e = open("stacks/web/secrets.yaml", &swapped.join("\n")).unwrap_err();
    assert!(e.message.contains("MAC does not match"), "{e}");
    // And a changed value in clear too.
    let changed = EXAMPLE_AGE_YAML.replace("remain in clear text", "remain in plain text");
    let e = open("stacks/web/secrets.yaml", &changed).unwrap_err();
    assert!(e.message.contains("MAC does not match"), "{e}");
}

#[test]
fn a_missing_key_names_the_file_and_the_recipients() {
    let e =
        decrypt_if_encrypted("stacks/web/app.env", FORMAT_AGE_ENV.as_bytes(), &NoKeys).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("stacks/web/app.env: cannot decrypt"),
        "{text}"
    );
    assert!(text.contains(AGE_RECIPIENT), "{text}");
}

#[test]
fn files_without_sops_metadata_pass_through() {
    for (path, text) in [
        (
            "stacks/web/compose.yaml",
            "services:\n  web:\n    image: nginx\n",
        ),
        ("stacks/web/.env", "A=1\nsops=ENC[AES256_GCM,x]\n"),
        ("stacks/web/x.json", "{\"sops\": \"ENC[AES256_GCM,\"}"),
        ("stacks/web/bin", "\u{0}\u{1}"),
    ] {
        assert_eq!(open(path, text).unwrap(), None, "{path}");
    }
}

#[test]
fn ini_files_are_refused_with_the_reason() {
    let e = open("stacks/web/x.ini", "[s]\nsops_mac = ENC[AES256_GCM,x]\n").unwrap_err();
    assert!(e.message.contains("INI"), "{e}");
}

/// A file Convoy encrypts itself (the cipher above, not `sops`): only to reach cases the
/// fixtures do not have (JSON typing, `encrypted_regex`, `mac_only_encrypted`).
#[test]
fn convoy_made_json_with_an_encrypted_regex_and_mac_only_encrypted() {
    use cipher::{encrypt, Plain};
    use sha2::Digest;
    let key = [7u8; 32];
    let iv = [9u8; 32];
    let pass = encrypt(&Plain::Str("hunter22".into()), &key, "db:password:", &iv);
    let port = encrypt(&Plain::Int(5432), &key, "db:port:", &iv);
    let mut h = sha2::Sha512::new();
    h.update(MAC_ONLY_ENCRYPTED_INIT);
    h.update(b"hunter22");
    h.update(b"5432");
    let mac = hex::encode_upper(h.finalize());
    let mac = encrypt(&Plain::Str(mac), &key, "2026-01-02T03:04:05Z", &iv);
    let text = format!(
        "{{\n  \"db\": {{\n    \"host\": \"db.local\",\n    \"password\": \"{pass}\",\n    \"port\": \"{port}\"\n  }},\n  \"sops\": {{\n    \"age\": [{{\"recipient\": \"age1x\", \"enc\": \"x\"}}],\n    \"lastmodified\": \"2026-01-02T03:04:05.25Z\",\n    \"mac\": \"{mac}\",\n    \"encrypted_regex\": \"^(password|port)$\",\n    \"mac_only_encrypted\": true,\n    \"version\": \"3.9.0\"\n  }}\n}}\n"
    );
    let d = decrypt_if_encrypted("stacks/web/config.json", text.as_bytes(), &Fixed(key))
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&d.bytes).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"db": {"host": "db.local", "password": "hunter22", "port": 5432}})
    );
    // The clear `host` is outside the MAC: changing it is allowed, as with SOPS.
    let moved = text.replace("db.local", "db.remote");
    assert!(decrypt_if_encrypted("c.json", moved.as_bytes(), &Fixed(key)).is_ok());
    let e = decrypt_if_encrypted("c.json", text.as_bytes(), &Fixed([8u8; 32])).unwrap_err();
    assert!(e.message.contains("`db.password`"), "{e}");
}

#[test]
fn a_stack_reads_its_env_file_and_compose_file_through_sops() {
    let tree = crate::manifest::MemoryTree::new()
        .with(
            "convoy.yaml",
            "fleet: t\nhosts:\n  a: {address: \"unix:///var/run/docker.sock\"}\n",
        )
        .with(
            "stacks/web/compose.yaml",
            "services:\n  web:\n    image: nginx\n    env_file: app.env\n",
        )
        .with("stacks/web/app.env", FORMAT_AGE_ENV);
    let env = BTreeMap::new();
    let state = crate::manifest::load_with_keys(&tree, &env, &AgeKeys::test()).unwrap();
    let svc = &state.stacks["web"].services["web"];
    assert_eq!(
        svc.container.env.get("foo").map(String::as_str),
        Some("bar")
    );
    assert!(svc.secret_env.contains("foo"));
    // Without the key: a located error naming the env file and the recipient.
    let errors = crate::manifest::load(&tree, &env).unwrap_err().0;
    let text = errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("stacks/web/compose.yaml:4:"), "{text}");
    assert!(
        text.contains("cannot read env file `stacks/web/app.env`: cannot decrypt with SOPS"),
        "{text}"
    );
    assert!(text.contains(AGE_RECIPIENT), "{text}");
}

/// A data key that is simply given.
struct Fixed([u8; 32]);

impl KeySource for Fixed {
    fn data_key(&self, _: &[MasterKey]) -> Result<DataKey, String> {
        Ok(zeroize::Zeroizing::new(self.0))
    }
}

/// A whole Compose file encrypted the way SOPS does it with `encrypted_regex` (made here with
/// the cipher above, as no `sops` binary was at hand): its secret is set and masked, an error
/// further down points at the line of the encrypted file, and a changed clear value fails the MAC.
#[test]
fn an_encrypted_compose_file_loads_with_its_values_secret_and_its_lines() {
    use cipher::{encrypt, Plain};
    use sha2::Digest;
    let key = [3u8; 32];
    let iv = [5u8; 32];
    let pass = encrypt(
        &Plain::Str("s3cret-pass-42".into()),
        &key,
        "services:web:environment:DB_PASSWORD:",
        &iv,
    );
    // SOPS's MAC covers every value in order, those left in clear too.
    let compose = |extra: &str, values: &[&str]| {
        let mut h = sha2::Sha512::new();
        for v in values {
            h.update(v.as_bytes());
        }
        let mac = encrypt(
            &Plain::Str(hex::encode_upper(h.finalize())),
            &key,
            "2026-01-02T03:04:05Z",
            &iv,
        );
        format!(
            "services:\n  web:\n    image: nginx\n    environment:\n      DB_PASSWORD: {pass}\n    labels:\n      a: x\n{extra}sops:\n    age:\n        - recipient: age1x\n          enc: x\n    lastmodified: \"2026-01-02T03:04:05Z\"\n    mac: {mac}\n    encrypted_regex: ^DB_PASSWORD$\n    version: 3.9.0\n"
        )
    };
    let tree = |compose: &str| {
        crate::manifest::MemoryTree::new()
            .with(
                "convoy.yaml",
                "fleet: t\nhosts:\n  a: {address: \"unix:///var/run/docker.sock\"}\n",
            )
            .with("stacks/web/compose.yaml", compose)
    };
    let env = BTreeMap::new();
    let load = |text: &str| crate::manifest::load_with_keys(&tree(text), &env, &Fixed(key));

    let bad = compose("    bogus_key: 1\n", &["nginx", "s3cret-pass-42", "x", "1"]);
    let errors = load(&bad).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].file.as_str(), errors[0].line),
        ("stacks/web/compose.yaml", 8)
    );
    assert!(errors[0].key.contains("bogus_key"), "{errors:?}");

    let good = compose("", &["nginx", "s3cret-pass-42", "x"]);
    let state = load(&good).unwrap();
    let svc = &state.stacks["web"].services["web"];
    assert_eq!(svc.container.env["DB_PASSWORD"], "s3cret-pass-42");
    assert!(state.secret_values.contains("s3cret-pass-42"));
    assert!(!state.secret_values.contains("nginx"));

    let e = load(&good.replace("a: x", "a: y")).unwrap_err().0;
    assert!(e[0].message.contains("MAC does not match"), "{e:?}");
    assert!(!format!("{e:?}").contains("s3cret-pass-42"));
}

/// Whatever a file holds, decryption answers (a value, an error or "not SOPS") and never
/// panics: every fixture, cut and with a byte changed at many places.
#[test]
fn damaged_files_never_panic() {
    let keys = AgeKeys::test();
    let json = include_str!("../../../tests/fixtures/sops/example.json");
    for (path, text) in [
        ("s/x.yaml", EXAMPLE_AGE_YAML),
        ("s/x.env", FORMAT_AGE_ENV),
        ("s/x.json", json),
        ("s/x.bin", json),
    ] {
        let bytes = text.as_bytes();
        for at in (0..bytes.len()).step_by(31) {
            let _ = decrypt_if_encrypted(path, &bytes[..at], &keys);
            for b in [b'"', b'\n', b':', b'{', b']', 0xC3] {
                let mut changed = bytes.to_vec();
                changed[at] = b;
                let _ = decrypt_if_encrypted(path, &changed, &keys);
            }
        }
    }
}

/// A secret's `file:` is decrypted; the same file bind-mounted or in a build context is shipped
/// as the repository stores it, so no decrypted value lands on a host's disk or in an image.
#[test]
fn secrets_are_decrypted_and_shipped_files_stay_as_stored() {
    let tree = crate::manifest::MemoryTree::new()
        .with(
            "convoy.yaml",
            "fleet: t\nhosts:\n  a: {address: \"unix:///var/run/docker.sock\"}\n",
        )
        .with(
            "stacks/web/compose.yaml",
            "services:\n  web:\n    build: ./app\n    volumes: [./app.env:/etc/app.env:ro]\n    secrets: [env]\nsecrets:\n  env: {file: ./app.env}\n",
        )
        .with("stacks/web/app.env", FORMAT_AGE_ENV)
        .with("stacks/web/app/Dockerfile", "FROM scratch\nCOPY app.env /\n")
        .with("stacks/web/app/app.env", FORMAT_AGE_ENV);
    let env = BTreeMap::new();
    let state = crate::manifest::load_with_keys(&tree, &env, &AgeKeys::test()).unwrap();
    let c = &state.stacks["web"].services["web"].container;
    let bind = c.files.iter().find(|f| f.target == "/etc/app.env").unwrap();
    let blob = &state.files.blobs[&bind.address];
    assert_eq!(
        blob.entries[0].data.as_deref(),
        Some(FORMAT_AGE_ENV.as_bytes())
    );
    let build = c.build.as_ref().unwrap();
    let (_, bytes) = build
        .input
        .files
        .iter()
        .find(|(p, _)| p == "app.env")
        .unwrap();
    assert_eq!(bytes.as_slice(), FORMAT_AGE_ENV.as_bytes());
    let secret = state
        .files
        .secrets
        .values()
        .next()
        .expect("the secret's value");
    // Exactly what `sops --decrypt` prints for the file (its `EmitPlainFile`): the entry and
    // its newline, no line of the metadata.
    let text = String::from_utf8_lossy(&secret.data);
    assert_eq!(text, "foo = bar\n");
}

/// A dotenv file's comments, as SOPS writes them (encrypted with the empty key path, outside the
/// MAC; made here with the cipher above, as no fixture of the sops project has one) and as a
/// person adds them (in clear): both are kept where they were, and `as_printed` is what
/// `sops --decrypt` prints: entries and comments in order, each ended, no empty line.
#[test]
fn dotenv_comments_are_kept_and_the_printed_form_is_what_sops_prints() {
    use cipher::{encrypt, Plain};
    use sha2::Digest;
    let key = [7u8; 32];
    let iv = [9u8; 32];
    let value = encrypt(&Plain::Str("s3cr3t-value".into()), &key, "TOKEN:", &iv);
    let note = encrypt(&Plain::Comment(" a note".into()), &key, ":", &iv);
    let mut h = sha2::Sha512::new();
    h.update(b"s3cr3t-value");
    h.update(b"in the clear");
    let mac = hex::encode_upper(h.finalize());
    let mac = encrypt(&Plain::Str(mac), &key, "2026-01-02T03:04:05Z", &iv);
    let text = format!(
        "#{note}\nTOKEN={value}\n\n# added by hand\nNAME_unencrypted=in the clear\nsops_age__list_0__map_enc=x\nsops_age__list_0__map_recipient=age1x\nsops_lastmodified=2026-01-02T03:04:05Z\nsops_mac={mac}\nsops_unencrypted_suffix=_unencrypted\nsops_version=3.9.0\n"
    );
    let d = decrypt_if_encrypted("stacks/web/app.env", text.as_bytes(), &Fixed(key))
        .unwrap()
        .unwrap();
    let kept = String::from_utf8(d.bytes.clone()).unwrap();
    assert_eq!(kept.split('\n').count(), text.split('\n').count());
    assert_eq!(kept.lines().nth(3), Some("# added by hand"));
    assert_eq!(
        String::from_utf8(super::dotenv::as_printed(&d.bytes)).unwrap(),
        "# a note\nTOKEN=s3cr3t-value\n# added by hand\nNAME_unencrypted=in the clear\n"
    );
    // A comment is outside the MAC, as in SOPS: changing one fails nothing.
    let edited = text.replace("# added by hand", "# edited");
    assert!(decrypt_if_encrypted("stacks/web/app.env", edited.as_bytes(), &Fixed(key)).is_ok());
}
