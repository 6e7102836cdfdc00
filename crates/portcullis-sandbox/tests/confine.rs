//! The confinement applied to a plain shell, read back from the shell's own `/proc` entry,
//! and the folder hand-over never following a link out of the folder.

use portcullis_sandbox::{Host, Ids, Plan, Protection, confine};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;

fn root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Run `script` under `/bin/sh`, confined with what this host gives; its output and the report.
fn run_confined(script: &str, room: &std::path::Path) -> (String, portcullis_sandbox::Report) {
    let host = Host::detect(BTreeSet::new());
    let plan = Plan {
        user: root().then_some(Ids {
            uid: 1_999_000_123,
            gid: 1_999_000_123,
        }),
        limits: Default::default(),
        read: vec!["/bin/sh".into()],
        write: vec![room.to_path_buf()],
        isolate_network: true,
        join_network: None,
        inherit_fd: None,
    };
    let report = host.report(&plan);
    let mut command = std::process::Command::new("/bin/sh");
    command.args(["-c", script]).current_dir(room).env_clear();
    confine(&mut command, &host, &plan, &report).expect("confine");
    let output = command.output().expect("the confined shell runs");
    (String::from_utf8_lossy(&output.stdout).into_owned(), report)
}

fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_default()
}

#[test]
fn a_confined_shell_has_what_the_report_says() {
    let room = tempfile::tempdir().expect("room");
    if root() {
        std::os::unix::fs::chown(room.path(), Some(1_999_000_123), Some(1_999_000_123))
            .expect("chown");
    }
    let (status, report) = run_confined("cat /proc/self/status", room.path());
    assert_eq!(field(&status, "NoNewPrivs:"), "1", "{status}");
    assert_eq!(
        field(&status, "Seccomp:") == "2",
        report.active.contains(&Protection::Seccomp),
        "{status}"
    );
    if report.active.contains(&Protection::User) {
        assert_eq!(field(&status, "Uid:"), "1999000123", "{status}");
    }
    if report.active.contains(&Protection::Capabilities) {
        assert_eq!(field(&status, "CapEff:"), "0000000000000000", "{status}");
    }
    // Its own session and process group, which what it starts stays in: the shell's pid,
    // then a child's process group and session.
    let (ids, _) = run_confined("echo $$ $(cut -d' ' -f5,6 /proc/self/stat)", room.path());
    let ids: Vec<&str> = ids.split_whitespace().collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids[1] == ids[0] && ids[2] == ids[0], "{ids:?}");
}

#[test]
fn outside_its_folder_a_confined_shell_writes_nothing() {
    let host = Host::detect(BTreeSet::new());
    if !host.offers().contains(&Protection::Filesystem) {
        return; // no Landlock here: the gateway's own tests check the reported gap.
    }
    let room = tempfile::tempdir().expect("room");
    let outside = tempfile::tempdir().expect("outside");
    if root() {
        for dir in [room.path(), outside.path()] {
            std::os::unix::fs::chown(dir, Some(1_999_000_123), Some(1_999_000_123)).expect("chown");
        }
    }
    let target = outside.path().join("escaped");
    let script = format!("echo in > inside && echo out > {} ; ls", target.display());
    let (listing, _) = run_confined(&script, room.path());
    assert!(listing.contains("inside"), "{listing}");
    assert!(!target.exists(), "Landlock let it write outside its folder");
}

#[test]
fn handing_a_folder_over_never_follows_a_link_out_of_it() {
    if !root() {
        return; // only root hands files to other users
    }
    let room = tempfile::tempdir().expect("room");
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "not yours").expect("victim");
    std::fs::create_dir(room.path().join("sub")).expect("sub");
    std::fs::write(room.path().join("sub/own"), "mine").expect("own");
    std::os::unix::fs::symlink(&victim, room.path().join("sub/file-link")).expect("link");
    std::os::unix::fs::symlink(outside.path(), room.path().join("dir-link")).expect("link");
    portcullis_sandbox::chown_tree(room.path(), 1_999_000_124, 1_999_000_124).expect("hand over");
    let owner = |p: &std::path::Path| std::fs::symlink_metadata(p).expect("meta").uid();
    assert_eq!(owner(&room.path().join("sub/own")), 1_999_000_124);
    assert_eq!(
        owner(&room.path().join("sub/file-link")),
        1_999_000_124,
        "the link itself"
    );
    assert_eq!(
        owner(&victim),
        0,
        "a file outside was handed over through a link"
    );
    assert_eq!(
        owner(outside.path()),
        0,
        "a folder outside was handed over through a link"
    );
}

#[test]
fn handing_a_folder_over_leaves_a_hard_link_to_a_file_elsewhere_alone() {
    if !root() {
        return;
    }
    let room = tempfile::tempdir().expect("room");
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "not yours").expect("victim");
    std::fs::hard_link(&victim, room.path().join("linked")).expect("hard link");
    std::fs::write(room.path().join("own"), "mine").expect("own");
    portcullis_sandbox::chown_tree(room.path(), 1_999_000_125, 1_999_000_125).expect("hand over");
    let owner = |p: &std::path::Path| std::fs::symlink_metadata(p).expect("meta").uid();
    assert_eq!(owner(&room.path().join("own")), 1_999_000_125);
    assert_eq!(
        owner(&victim),
        0,
        "a file elsewhere was handed over through a hard link"
    );
}
