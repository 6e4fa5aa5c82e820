//! Static file serving on arbitrary URL paths: whatever the encoding, the
//! secret file beside the served directory is never answered (and the
//! symlinks inside the directory lead out to it on purpose).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Site {
    runtime: tokio::runtime::Runtime,
    root: PathBuf,
}

const SECRET: &[u8] = b"the-secret-beside-the-site";

fn site() -> &'static Site {
    static SITE: OnceLock<Site> = OnceLock::new();
    SITE.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("d-back-fuzz-site-{}", std::process::id()));
        let root = base.join("site");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "hello").unwrap();
        std::fs::write(base.join("secret.txt"), SECRET).unwrap();
        let _ = std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link.txt"));
        let _ = std::os::unix::fs::symlink(&base, root.join("escape"));
        Site {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            root: std::fs::canonicalize(root).unwrap(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let path = format!("/{path}");
    let site = site();
    let (status, body) = site
        .runtime
        .block_on(d_back::fuzzing::static_response(&site.root, &path));
    assert!(!status.is_server_error(), "{path:?} answered {status}");
    assert!(
        !body.windows(SECRET.len()).any(|w| w == SECRET),
        "{path:?} leaked the file outside the directory"
    );
});
