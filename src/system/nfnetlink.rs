//! The one way the agent opens a netfilter netlink socket (nfnetlink:
//! nf_tables reads and ctnetlink alike): bound to an automatic port and
//! connected to the kernel.

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

/// Opens a `NETLINK_NETFILTER` socket connected to the kernel.
pub fn open_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}
