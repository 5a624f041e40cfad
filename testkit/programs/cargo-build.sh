# cargo build --offline of a crate without dependencies, its target directory inside $D, run
# twice (the second finds nothing to do), and the program it built.
set -u
cd "$D"
mkdir -p tiny/src
printf '[package]\nname = "tiny"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n' > tiny/Cargo.toml
echo 'fn main() { println!("tiny {}", 6 * 7); }' > tiny/src/main.rs
cd tiny
export CARGO_TARGET_DIR="$D/tiny/target"
cargo build --offline -q; echo "build: $?"
./target/debug/tiny; echo "run: $?"
cargo build --offline -q; echo "again: $?"
ls target/debug | grep -c tiny
rm -rf target   # what it holds names the run's paths and times
ls
