//! A script piped through a real netcat, exactly as the README shows it.

mod common;

use std::process::Stdio;

use common::start_default;

/// Runs `sh -c "<script> | nc <addr>"` and returns its standard output.
async fn nc(script: &str, addr: std::net::SocketAddr) -> Option<String> {
    if std::process::Command::new("nc").arg("-h").output().is_err() {
        common::skip(
            "netcat",
            "`nc` is not installed (apt-get install netcat-openbsd)",
        );
        return None;
    }
    let cmd = format!("{script} | nc {} {}", addr.ip(), addr.port());
    let child = tokio::process::Command::new("sh")
        .args(["-c", &cmd])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run sh");
    let out = tokio::time::timeout(common::WAIT, child.wait_with_output())
        .await
        .expect("nc finishes once the server closes")
        .expect("nc output");
    assert!(out.status.success(), "nc failed: {out:?}");
    Some(String::from_utf8(out.stdout).expect("utf-8 output"))
}

/// The README's netcat example: its command and the output it promises.
fn readme_example() -> (String, String) {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Try it with netcat")
        .nth(1)
        .expect("README has the netcat section");
    let blocks: Vec<&str> = section.split("```").collect();
    let command = blocks[1].trim_start_matches("sh").trim();
    let output = blocks[3].trim_start_matches('\n');
    let script = command
        .strip_suffix("| nc 127.0.0.1 7878")
        .expect("the example pipes into nc 127.0.0.1 7878")
        .trim();
    (script.to_string(), output.to_string())
}

#[tokio::test]
async fn the_readme_netcat_session_prints_what_the_readme_says() {
    let server = start_default().await;
    let (script, expected) = readme_example();
    let Some(out) = nc(&script, server.addr).await else {
        return;
    };
    assert_eq!(out, expected);

    // A second script sees the pixel the first one placed, over CRLF lines.
    let out = nc(r"printf 'canvas\r\nquit\r\n'", server.addr)
        .await
        .expect("nc ran before");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 64 + 2);
    assert_eq!(&lines[4][..13], "ROW 4 0005000");
    assert_eq!(lines[64], "OK 1 64 64");
    assert_eq!(lines[65], "OK bye");
}
