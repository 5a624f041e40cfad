//! Compiles the C half of the interceptor: the variadic `exec` functions, which stable Rust
//! cannot define.

fn main() {
    println!("cargo:rerun-if-changed=src/variadic.c");
    cc::Build::new()
        .file("src/variadic.c")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("btfuse_variadic");
    // rustc's version script exports only Rust's own `#[no_mangle]` items from a cdylib;
    // a second one exports the C functions.
    let script = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("variadic.map");
    std::fs::write(
        &script,
        "{ global: execl; execle; execlp; dprintf; vdprintf; __dprintf_chk; __vdprintf_chk; syscall; };\n",
    )
    .unwrap();
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        script.display()
    );
}
