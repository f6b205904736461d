//! The ONNX protobuf messages, generated at build time from the official schema
//! (`proto/onnx.proto`, ONNX 1.19.1, Apache-2.0; see `proto/NOTICE.md`) by prost-build,
//! with protox as the protobuf compiler.
//!
//! Everything is in [`onnx`], named as in the schema: [`onnx::ModelProto`],
//! [`onnx::GraphProto`], [`onnx::NodeProto`], [`onnx::TensorProto`], ... Encode with
//! [`prost::Message::encode_to_vec`], decode with [`prost::Message::decode`].

pub use prost;

/// The `onnx` protobuf package.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]
pub mod onnx {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}
