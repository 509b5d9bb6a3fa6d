//! The process allocator: mimalloc, tuned to give memory back.
//!
//! `xfhub` runs on mimalloc (`#[global_allocator]` in `main.rs`) rather than glibc's malloc:
//! measured in the same minutes (BENCHMARKS.md, runs of 2026-12-05), it took 13-14 % less
//! server CPU per stored petition and made the 100,000-row Excel import 12-16 % faster and the
//! export a fifth faster. glibc's malloc was a fifth of an import's CPU time (per-thread
//! arenas, consolidation of freed chunks, and documents allocated on one thread and freed on
//! another).
//!
//! With its defaults mimalloc held 10-18 MiB more than glibc under the same load: it commits
//! its arenas eagerly, and a purge of eagerly committed memory only marks it reusable
//! (`MADV_FREE`), which still counts as resident. [`configure`] turns eager commit off, so
//! freed memory is decommitted, and purges after 2 ms instead of a second. That kept the REST
//! ingest's peak RSS within about 5 MiB of glibc's (3-4 MiB of it more code resident) and the
//! import's below glibc's.

/// `mi_option_arena_eager_commit` of mimalloc 3's `mi_option_t` (`mimalloc.h`); the Rust
/// binding names only some options, so the numbers are written here (checked by a test against
/// the defaults of the linked mimalloc).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// `mi_option_purge_delay`, milliseconds before freed memory is given back.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets mimalloc's options; call before the first allocation (the binary does from a
/// constructor that runs before `main`).
#[allow(
    unsafe_code,
    reason = "mimalloc's options are set through its C API only; the one exception to the \
              workspace's unsafe_code = deny"
)]
pub fn configure() {
    // SAFETY: `mi_option_set` only stores an option value; both numbers name options of the
    // linked mimalloc (see the test below).
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code, reason = "reads mimalloc's options through its C API")]
    fn the_option_numbers_name_the_options_meant() {
        // The defaults of the linked mimalloc (`src/options.c`): arena_eager_commit 2,
        // purge_delay 1000 ms.
        // SAFETY: reads option values.
        let (eager, delay) = unsafe {
            (
                libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(PURGE_DELAY),
            )
        };
        assert_eq!((eager, delay), (2, 1000));
    }
}
