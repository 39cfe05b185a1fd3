//! The binary's output into a pipe that closes early (`ipvs-agent plan ...
//! | head -1`): the command ends quietly, as other Unix tools do, instead
//! of panicking on the broken pipe. Runs the built binary; needs no root
//! and no kernel (`plan`).

use std::io::Read;
use std::process::{Command, Stdio};

/// `ipvs-agent plan` of the examples, `ipvsadm -Sn`-shaped.
fn plan_examples() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ipvs-agent"));
    command.args([
        "plan",
        "--manifests",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples"),
        "--node-name",
        "node1",
        "--node-ip",
        "192.168.122.10",
        "--output",
        "save",
    ]);
    command
}

#[test]
fn plan_into_a_closed_pipe_ends_quietly() {
    let mut child = plan_examples()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ipvs-agent plan");
    // Close the reading end before the plan is printed: as `head -1`
    // does once it has its line (here before the first one).
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait for ipvs-agent");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert!(status.success(), "{status}: {stderr}");
}

#[test]
fn plan_prints_the_whole_table_into_an_open_pipe() {
    let output = plan_examples().output().expect("run ipvs-agent plan");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("-A -t 10.1.115.75:80 -s rr\n"),
        "the hostname Service's ClusterIP: {text}"
    );
}
