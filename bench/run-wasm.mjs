// Runs a wasm32-wasip1 build of parse-throughput in V8, through Node.js's WASI.
//
//   cargo build --release --locked --target wasm32-wasip1 -p pqguard-bench
//   node bench/run-wasm.mjs [--wasm PATH] [--liftoff] [parse-throughput arguments...]
//
// PATH defaults to target/wasm32-wasip1/release/parse-throughput.wasm in the
// repository. Every other argument goes to the benchmark (for example --json).
// The module gets no preopened directories and no environment except
// PQGUARD_BENCH_ENGINE, which names the engine in the benchmark's output.
//
// The module is compiled the way Envoy compiles a proxy-wasm filter:
// proxy-wasm-cpp-host turns V8's baseline compiler (Liftoff) off, so every
// function is compiled by the optimizing compiler (TurboFan) before it runs.
// --liftoff keeps Node's default instead (Liftoff first, tier-up of hot
// functions), which times partly unoptimized code during the warm-up.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';

// node:wasi prints an ExperimentalWarning on Node 20; keep stderr for real problems.
process.removeAllListeners('warning');
process.on('warning', (warning) => {
  if (warning.name !== 'ExperimentalWarning') console.warn(warning);
});
const { WASI } = await import('node:wasi');

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let wasmPath = path.join(repo, 'target/wasm32-wasip1/release/parse-throughput.wasm');
let liftoff = false;
const args = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--wasm') {
    if (i + 1 >= argv.length) {
      console.error('run-wasm.mjs: --wasm needs a path');
      process.exit(2);
    }
    wasmPath = path.resolve(argv[++i]);
  } else if (argv[i] === '--liftoff') {
    liftoff = true;
  } else {
    args.push(argv[i]);
  }
}
if (!liftoff) v8.setFlagsFromString('--no-liftoff');

let bytes;
try {
  bytes = await readFile(wasmPath);
} catch (err) {
  console.error(`run-wasm.mjs: cannot read ${wasmPath}: ${err.message}`);
  console.error('build it with: cargo build --release --locked --target wasm32-wasip1 -p pqguard-bench');
  process.exit(1);
}

const tiers = liftoff ? 'Liftoff+TurboFan' : 'TurboFan only, as in Envoy';
const wasi = new WASI({
  version: 'preview1',
  args: ['parse-throughput', ...args],
  env: { PQGUARD_BENCH_ENGINE: `V8 ${process.versions.v8}, ${tiers}, Node.js ${process.version}` },
  preopens: {},
  returnOnExit: true,
});
const module = await WebAssembly.compile(bytes);
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
