//! Link `minik` as a position-dependent executable (`-no-pie`).
//!
//! Every container runs in its own `minik shim` process, an exec of this binary. As a PIE,
//! each exec makes the dynamic loader apply ~134,000 relative relocations, writing the whole
//! `.data.rel.ro` section (~3 MB of vtables and string tables): 3 MB of private dirty memory
//! in every shim and in the server, and the page faults and time to produce it at every
//! container start. Linked at a fixed address, the linker resolves those pointers itself and
//! the section stays clean, shared page cache. The code is still compiled as PIC (rustc's
//! default), which links fine into a non-PIE executable; only the main binary's load address
//! is no longer randomized (shared libraries, heap and stacks still are), as with Go's
//! default (k3s, containerd) builds.
//!
//! It is also linked with identical code folding (`--icf=all`, lld's, rustc's default linker
//! here): the many monomorphised copies of generic code that compile to the same machine
//! code (drop glue, Vec and iterator code of same-sized types, ...) are kept once. That cuts
//! the stripped release binary from 78.3 to 75.4 MiB; Rust does not promise distinct
//! functions distinct addresses, so nothing may rely on it.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
}
