//! The kernel's errno values the node-programming code tells apart (one
//! place: `libc` would be a dependency for three numbers).

/// The object already exists.
pub const EEXIST: i32 = 17;
/// No such device (a link that is gone).
pub const ENODEV: i32 = 19;
/// The address is not there (removing an address that is gone).
pub const EADDRNOTAVAIL: i32 = 99;
/// No such file or directory (IPVS: no such real server, or an unknown
/// scheduler on add).
pub const ENOENT: i32 = 2;
/// No such process (IPVS: no such virtual server).
pub const ESRCH: i32 = 3;
/// Out of memory.
pub const ENOMEM: i32 = 12;
