// SPDX-License-Identifier: MIT

//! The IPVS generic netlink commands (`enum ipvs_cmd_attributes` in
//! `include/uapi/linux/ip_vs.h`).

const IPVS_CMD_NEW_SERVICE: u8 = 1;
const IPVS_CMD_SET_SERVICE: u8 = 2;
const IPVS_CMD_DEL_SERVICE: u8 = 3;
const IPVS_CMD_GET_SERVICE: u8 = 4;
const IPVS_CMD_NEW_DEST: u8 = 5;
const IPVS_CMD_SET_DEST: u8 = 6;
const IPVS_CMD_DEL_DEST: u8 = 7;
const IPVS_CMD_GET_DEST: u8 = 8;
const IPVS_CMD_NEW_DAEMON: u8 = 9;
const IPVS_CMD_DEL_DAEMON: u8 = 10;
const IPVS_CMD_GET_DAEMON: u8 = 11;
const IPVS_CMD_SET_CONFIG: u8 = 12;
const IPVS_CMD_GET_CONFIG: u8 = 13;
const IPVS_CMD_SET_INFO: u8 = 14;
const IPVS_CMD_GET_INFO: u8 = 15;
const IPVS_CMD_ZERO: u8 = 16;
const IPVS_CMD_FLUSH: u8 = 17;

/// An IPVS command: the `cmd` byte of the generic netlink header.
///
/// Replies reuse request commands: a `GET_SERVICE` is answered with
/// `NEW_SERVICE` messages, `GET_DEST` with `NEW_DEST`, `GET_DAEMON` with
/// `NEW_DAEMON`, `GET_CONFIG` with `SET_CONFIG` and `GET_INFO` with
/// `SET_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpvsCommand {
    /// `IPVS_CMD_NEW_SERVICE`: add a virtual service (`ipvsadm -A`).
    NewService,
    /// `IPVS_CMD_SET_SERVICE`: edit a virtual service (`ipvsadm -E`).
    SetService,
    /// `IPVS_CMD_DEL_SERVICE`: delete a virtual service (`ipvsadm -D`).
    DelService,
    /// `IPVS_CMD_GET_SERVICE`: get one service, or dump all of them.
    GetService,
    /// `IPVS_CMD_NEW_DEST`: add a real server (`ipvsadm -a`).
    NewDest,
    /// `IPVS_CMD_SET_DEST`: edit a real server (`ipvsadm -e`).
    SetDest,
    /// `IPVS_CMD_DEL_DEST`: delete a real server (`ipvsadm -d`).
    DelDest,
    /// `IPVS_CMD_GET_DEST`: dump the real servers of one service.
    GetDest,
    /// `IPVS_CMD_NEW_DAEMON`: start a connection sync daemon.
    NewDaemon,
    /// `IPVS_CMD_DEL_DAEMON`: stop a connection sync daemon.
    DelDaemon,
    /// `IPVS_CMD_GET_DAEMON`: dump the sync daemons.
    GetDaemon,
    /// `IPVS_CMD_SET_CONFIG`: set the TCP, TCP FIN and UDP timeouts; also
    /// the reply to `GET_CONFIG`.
    SetConfig,
    /// `IPVS_CMD_GET_CONFIG`: read the timeouts.
    GetConfig,
    /// `IPVS_CMD_SET_INFO`: the reply to `GET_INFO`.
    SetInfo,
    /// `IPVS_CMD_GET_INFO`: read the IPVS version and connection table size.
    GetInfo,
    /// `IPVS_CMD_ZERO`: zero the counters of one service or of all.
    Zero,
    /// `IPVS_CMD_FLUSH`: delete every service (`ipvsadm -C`).
    Flush,
    /// A command this crate does not know.
    Other(u8),
}

impl From<IpvsCommand> for u8 {
    fn from(command: IpvsCommand) -> u8 {
        match command {
            IpvsCommand::NewService => IPVS_CMD_NEW_SERVICE,
            IpvsCommand::SetService => IPVS_CMD_SET_SERVICE,
            IpvsCommand::DelService => IPVS_CMD_DEL_SERVICE,
            IpvsCommand::GetService => IPVS_CMD_GET_SERVICE,
            IpvsCommand::NewDest => IPVS_CMD_NEW_DEST,
            IpvsCommand::SetDest => IPVS_CMD_SET_DEST,
            IpvsCommand::DelDest => IPVS_CMD_DEL_DEST,
            IpvsCommand::GetDest => IPVS_CMD_GET_DEST,
            IpvsCommand::NewDaemon => IPVS_CMD_NEW_DAEMON,
            IpvsCommand::DelDaemon => IPVS_CMD_DEL_DAEMON,
            IpvsCommand::GetDaemon => IPVS_CMD_GET_DAEMON,
            IpvsCommand::SetConfig => IPVS_CMD_SET_CONFIG,
            IpvsCommand::GetConfig => IPVS_CMD_GET_CONFIG,
            IpvsCommand::SetInfo => IPVS_CMD_SET_INFO,
            IpvsCommand::GetInfo => IPVS_CMD_GET_INFO,
            IpvsCommand::Zero => IPVS_CMD_ZERO,
            IpvsCommand::Flush => IPVS_CMD_FLUSH,
            IpvsCommand::Other(value) => value,
        }
    }
}

impl From<u8> for IpvsCommand {
    fn from(value: u8) -> Self {
        match value {
            IPVS_CMD_NEW_SERVICE => IpvsCommand::NewService,
            IPVS_CMD_SET_SERVICE => IpvsCommand::SetService,
            IPVS_CMD_DEL_SERVICE => IpvsCommand::DelService,
            IPVS_CMD_GET_SERVICE => IpvsCommand::GetService,
            IPVS_CMD_NEW_DEST => IpvsCommand::NewDest,
            IPVS_CMD_SET_DEST => IpvsCommand::SetDest,
            IPVS_CMD_DEL_DEST => IpvsCommand::DelDest,
            IPVS_CMD_GET_DEST => IpvsCommand::GetDest,
            IPVS_CMD_NEW_DAEMON => IpvsCommand::NewDaemon,
            IPVS_CMD_DEL_DAEMON => IpvsCommand::DelDaemon,
            IPVS_CMD_GET_DAEMON => IpvsCommand::GetDaemon,
            IPVS_CMD_SET_CONFIG => IpvsCommand::SetConfig,
            IPVS_CMD_GET_CONFIG => IpvsCommand::GetConfig,
            IPVS_CMD_SET_INFO => IpvsCommand::SetInfo,
            IPVS_CMD_GET_INFO => IpvsCommand::GetInfo,
            IPVS_CMD_ZERO => IpvsCommand::Zero,
            IPVS_CMD_FLUSH => IpvsCommand::Flush,
            other => IpvsCommand::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for value in 0..=u8::MAX {
            assert_eq!(u8::from(IpvsCommand::from(value)), value);
        }
        assert_eq!(IpvsCommand::from(17), IpvsCommand::Flush);
        assert_eq!(IpvsCommand::from(18), IpvsCommand::Other(18));
    }
}
