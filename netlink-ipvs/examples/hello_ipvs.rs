//! Programs one virtual service with three real servers through the batch
//! API, prints the table (ipvsadm style, read back from the kernel), then
//! removes exactly what it added. Needs root and a kernel with IPVS, for
//! example the guest: `integration/scripts/in-guest.sh --
//! target/debug/examples/hello_ipvs`.

use netlink_ipvs::format::{format_list, IpvsListOptions};
use netlink_ipvs::{
    new_connection, IpvsDestination, IpvsForwardingMethod, IpvsOperation, IpvsService,
    IpvsServiceKey,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (connection, handle) = new_connection()?;
    tokio::spawn(connection);

    // The hostname Service of the Kubernetes Service document: port 80 to
    // three pods on 9376.
    let key = IpvsServiceKey::tcp("10.96.0.10".parse()?, 80);
    let mut operations = vec![IpvsOperation::AddService(IpvsService::new(key, "rr"))];
    for pod in ["10.244.0.11", "10.244.0.12", "10.244.0.13"] {
        operations.push(IpvsOperation::AddDestination(
            key,
            IpvsDestination::new(pod.parse()?, 9376, IpvsForwardingMethod::Masquerade, 1),
        ));
    }
    for (operation, result) in operations.iter().zip(handle.apply(&operations).await) {
        match result {
            Ok(()) => println!("ok: {operation}"),
            Err(error) => println!("failed: {error}"),
        }
    }

    // Read back from the kernel and print as `ipvsadm -Ln` would.
    let info = handle.info().await?;
    let mut table = handle.table().await?;
    table.retain(|entry| entry.service.key == key);
    print!(
        "{}",
        format_list(&info, &table, &IpvsListOptions::default())
    );

    handle.delete_service(&key).await?;
    println!("deleted {key}");
    Ok(())
}
