//! Deployment guarantees (docs/delivery.md) on an embedded host. The cluster-mode side is in
//! `cluster_mode/crash.rs`.

use rill_runtime::deployment::Guarantee;
use rill_runtime::scheduler::DeploymentInfo;
use rill_tests::guests;
use rill_tests::host::TestHost;

/// Until the embedded log has transactions, an exactly-once deployment is refused at deploy
/// time in one line, and nothing is deployed; at-least-once is the default and is listed.
#[test]
fn exactly_once_is_refused_in_embedded_mode_and_at_least_once_is_listed() {
    let h = TestHost::start();
    h.cli_ok(&["topic", "create", "orders", "--partitions", "1"]);
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy",
            guests::NOTIFIER,
            "--name",
            "n",
            "--topic",
            "orders",
        ];
        args.extend_from_slice(extra);
        h.cli(&args)
    };
    let out = deploy(&["--guarantee", "exactly-once"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exactly-once needs transactions in the embedded log: not available yet"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        h.client()
            .get::<DeploymentInfo>("/v1/deployments/n")
            .is_err()
    );

    let out = deploy(&["--guarantee", "once"]);
    assert!(!out.status.success());

    assert!(deploy(&[]).status.success());
    let d: DeploymentInfo = h.client().get("/v1/deployments/n").expect("deployed");
    assert_eq!(d.spec.guarantee, Guarantee::AtLeastOnce);
    let list = h.cli_ok(&["list"]);
    assert!(
        list.contains("GUARANTEE") && list.contains("at-least-once"),
        "{list}"
    );
    // A redeploy keeps the guarantee it does not name, and cannot switch to exactly-once here.
    assert!(!deploy(&["--guarantee", "exactly-once"]).status.success());
    let d: DeploymentInfo = h.client().get("/v1/deployments/n").expect("still deployed");
    assert_eq!(d.spec.guarantee, Guarantee::AtLeastOnce);
}
