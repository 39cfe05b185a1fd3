// SPDX-License-Identifier: MIT

//! ipvsadm-compatible text: `-Ln`, `-Ln --stats`, `-Ln --rate`, `-Sn`.
