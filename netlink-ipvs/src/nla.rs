// SPDX-License-Identifier: MIT

//! Small helpers shared by the attribute files: writing fixed-size values
//! into an attribute's value buffer, and nesting a list of attributes.

use netlink_packet_core::{
    DecodeError, Emitable, Nla, NlaBuffer, NlasIterator, Parseable, NLA_TYPE_MASK,
};

/// Writes `bytes` at the start of `buffer` (sized by `value_len`).
pub(crate) fn put(buffer: &mut [u8], bytes: &[u8]) {
    buffer[..bytes.len()].copy_from_slice(bytes);
}

/// Writes a NUL-terminated string.
pub(crate) fn put_string(buffer: &mut [u8], value: &str) {
    buffer[..value.len()].copy_from_slice(value.as_bytes());
    buffer[value.len()] = 0;
}

/// Parses every attribute of a nest with `parse`.
pub(crate) fn parse_nested<T, F>(payload: &[u8], mut parse: F) -> Result<Vec<T>, DecodeError>
where
    F: FnMut(&NlaBuffer<&[u8]>) -> Result<T, DecodeError>,
{
    NlasIterator::new(payload).map(|nla| parse(&nla?)).collect()
}

/// The attribute type without the NLA_F_NESTED / NLA_F_NET_BYTEORDER bits:
/// the kernel writes IPVS nests without NLA_F_NESTED and ignores the bit on
/// input, so readers mask it.
pub(crate) fn kind_of(buffer: &NlaBuffer<&[u8]>) -> u16 {
    buffer.kind() & NLA_TYPE_MASK
}

/// Parses a `DefaultNla`, keeping an attribute this crate does not know.
pub(crate) fn other(
    buffer: &NlaBuffer<&[u8]>,
) -> Result<netlink_packet_core::DefaultNla, DecodeError> {
    netlink_packet_core::DefaultNla::parse(buffer)
}

/// Length of a list of attributes written one after another.
pub(crate) fn list_len<T: Nla>(nlas: &[T]) -> usize {
    nlas.iter().map(Emitable::buffer_len).sum()
}

/// Writes a list of attributes one after another. (The `Emitable` of
/// `&[T]` in netlink-packet-core measures each attribute twice more; on the
/// batch path that doubled the cost of encoding.)
pub(crate) fn emit_list<T: Nla>(nlas: &[T], buffer: &mut [u8]) {
    let mut start = 0;
    for nla in nlas {
        let length = nla.buffer_len();
        nla.emit(&mut buffer[start..start + length]);
        start += length;
    }
}
