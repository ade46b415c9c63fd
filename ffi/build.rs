//! Gives the shared library its C name: its SONAME is `libmissive.so` whatever cargo calls the
//! file (`libmissive_ffi.so`), so programs linked against it look for `libmissive.so`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmissive.so");
    }
}
