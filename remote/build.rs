//! Compiles `proto/loft.proto` with protox (a Rust protobuf compiler), so building
//! Loft needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/loft.proto");
    let descriptors = protox::compile(["proto/loft.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
