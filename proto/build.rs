fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from a crate so a fresh machine needs nothing installed.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_protos(&["proto/keel.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/keel.proto");
    Ok(())
}
