//! bpffs directories that killed test and bench runs left behind.

/// Unpins what killed test and bench runs left in bpffs (see `keel_lab::sweep_dead_pins`), so
/// that a run never starts beside another's stale programs and maps.
pub fn sweep_dead_pins() {
    for prefix in ["keel-test", "keel-bench"] {
        for dir in keel_lab::sweep_dead_pins(prefix) {
            println!("removed the pins of a dead run: {}", dir.display());
        }
    }
}
