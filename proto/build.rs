//! Compiles `proto/tandem/v1/*.proto` with protox (pure Rust), so building Tandem needs
//! no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/tandem/v1/telemetry.proto",
        "proto/tandem/v1/enroll.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Small per-stream buffers: see src/codec.rs.
        .codec_path("crate::codec::SmallBufferCodec")
        .compile_fds(fds)?;
    Ok(())
}
