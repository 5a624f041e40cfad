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
        "{ global: execl; execle; execlp; dprintf; vdprintf; __dprintf_chk; __vdprintf_chk; syscall; vfork; };\n",
    )
    .unwrap();
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        script.display()
    );
    // The library's calls to functions it defines itself (`read`, `open`, `stat` and the
    // other interposed names, which the C library and std call too) bound when it is linked,
    // not looked up by the dynamic loader in every process that preloads it.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    // Code every preloaded process runs (the constructors, the common interposed calls and
    // what they ask on a path or descriptor that is not btfuse's) is marked
    // `#[link_section = ".text.hot.btfuse"]`; kept apart as `.text.hot`, it takes a few
    // neighbouring pages instead of one page in each part of `.text` (see `src/hot.rs`).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,keep-text-section-prefix");
    // The unwinder linked in rather than libgcc_s.so.1 loaded beside the library: every
    // preloaded program would otherwise open and map one more object and run its constructor,
    // whose CPUID probes cost about 150 µs per process on a virtual machine (measured with
    // `perf stat -r 300 true` with and without LD_PRELOAD=libgcc_s.so.1).
    // std asks for `-lgcc_s` itself; with the static unwinder named first, the linker
    // (`--as-needed`) finds nothing left for libgcc_s to provide and records no need of it.
    let eh = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|path| std::path::PathBuf::from(path.trim()));
    if let Some(dir) = eh
        .as_deref()
        .filter(|p| p.is_absolute())
        .and_then(|p| p.parent())
    {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}
