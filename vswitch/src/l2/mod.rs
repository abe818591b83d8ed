//! Layer 2: the MAC learning table of the bridge domains.

pub mod mac_table;

pub use mac_table::{MacTable, MacTableConfig};
