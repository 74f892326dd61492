//! The offline half of the audit trail: reading logs after the fact. Nothing
//! here runs inside the filter; the command line (`pqguard audit verify`,
//! `pqguard audit report`) and auditors' tools use it.

pub mod html;
pub mod inventory;
pub mod verify;
