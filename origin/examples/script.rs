//! Prints a Redis script of the store, as Redis runs it, for `redis-benchmark` to run the same
//! script as the origin: `cargo run --example script -- join`.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    match queuegate_origin::store::redis::script_source(&name) {
        Some(source) => print!("{source}"),
        None => {
            eprintln!("usage: script <join|visit|leave|session|sync|admit|pause>");
            std::process::exit(2);
        }
    }
}
