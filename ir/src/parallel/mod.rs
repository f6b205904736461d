//! Auto-parallel: meshes, layouts, sharding rules and the partitioner (LANGUAGE.md §9,
//! DESIGN.md §6).
//!
//! A staged graph is written for one device. [`partition`] turns it into the graph each
//! device of a [`Mesh`] runs (SPMD: one program, each device on its own pieces), with the
//! [`Collective`]s that keep the pieces consistent. Which pieces a value has is its
//! [`Layout`] (MindSpore's device matrix + tensor map), and which layouts a primitive can
//! compute on is its sharding rule ([`rules`]), one exhaustive match over the primitive
//! table like every other rule family.

pub mod bucket;
mod collective;
pub mod layout;
pub mod partition;
pub mod planner;
pub mod rules;
pub mod saved;

pub use bucket::BucketPolicy;
pub use collective::{Collective, ReduceKind, check_type, split_sizes, split_start};
pub use layout::{Layout, Mesh};
pub use partition::{PartitionError, Partitioned, Step, partition, partition_first};
pub use planner::{Chosen, Estimate, Link, PlanError, Profile, Role, estimate, peak_bytes, search};
pub use saved::{PlanFileError, SavedPlan};
