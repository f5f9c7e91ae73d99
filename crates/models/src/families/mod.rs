//! One file per decoder family. A family file holds only what sets it apart: its weight
//! table (names and shapes), how its layers are built from that table, and its forward pass
//! composed of [`crate::layers`]. The registry ([`crate::registry`]) maps architecture names
//! to these files.

pub mod gemma3;
pub mod llama;
pub mod moe;
pub mod phi3;
pub mod qwen3;
