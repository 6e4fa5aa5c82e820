//! SIGHUP reads the files again without a restart: the data file (browsers
//! see the changes) and the TLS certificate and key (new handshakes get the
//! new pair); a file that is wrong is reported and the old one kept.

mod common;

use common::binary::*;
use common::*;

const WORLD: &str = r#"
[servers.100000000000000001]
id = "one"
name = "One"

[[servers.100000000000000001.users]]
uid = "7"
username = "seven"
status = "online"
"#;

#[tokio::test]
async fn sighup_reloads_the_data_file_and_keeps_the_old_one_when_it_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("world.toml");
    std::fs::write(&path, WORLD).unwrap();
    let (child, addr, lines) = spawn_with_log(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data",
            path.to_str().unwrap(),
        ],
        &[],
    );
    let child = KillOnDrop(child);
    let (mut watcher, join) = Client::joined(addr, "one").await;
    assert_eq!(join["data"]["users"]["7"]["status"], "online");

    std::fs::write(&path, WORLD.replace("\"online\"", "\"idle\"")).unwrap();
    signal(&child.0, "HUP");
    wait_for_line(&lines, "data file reloaded");
    let presence = watcher.recv_type("presence").await;
    assert_eq!(presence["data"]["uid"], "7", "{presence}");
    assert_eq!(presence["data"]["status"], "idle", "{presence}");

    // A file that no longer parses: said so, and the old data stays.
    std::fs::write(&path, "[servers.1\nid = ").unwrap();
    signal(&child.0, "HUP");
    let refused = wait_for_line(&lines, "data file not reloaded");
    assert!(refused.contains("world.toml"), "{refused}");
    let (_late, join) = Client::joined(addr, "one").await;
    assert_eq!(join["data"]["users"]["7"]["status"], "idle");
}

#[tokio::test]
async fn sighup_reloads_the_tls_certificate_for_new_handshakes() {
    let (_dir, cert_path, key_path, old) = tls_files();
    let (child, addr, lines) = spawn_with_log(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        &[],
    );
    let child = KillOnDrop(child);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let handshake = |cert: &rcgen::Certificate| {
        let connector = tls_connector(cert);
        let name = name.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            connector.connect(name, tcp).await.is_ok()
        }
    };
    let new = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    assert!(handshake(&old.cert).await);
    assert!(
        !handshake(&new.cert).await,
        "the new pair is not served yet"
    );

    // A renewal: the files are replaced, then the server is told.
    std::fs::write(&cert_path, new.cert.pem()).unwrap();
    std::fs::write(&key_path, new.signing_key.serialize_pem()).unwrap();
    signal(&child.0, "HUP");
    wait_for_line(&lines, "TLS certificate reloaded");
    assert!(handshake(&new.cert).await);
    assert!(!handshake(&old.cert).await, "the old pair is gone");

    // A key that does not match: said so, and the working pair stays.
    std::fs::write(&key_path, old.signing_key.serialize_pem()).unwrap();
    signal(&child.0, "HUP");
    let refused = wait_for_line(&lines, "TLS certificate not reloaded");
    assert!(refused.contains("does not match"), "{refused}");
    assert!(handshake(&new.cert).await);
}
