#!/usr/bin/env node
// Runs Khronos glTF-Validator (npm package gltf-validator, a library without a CLI) on one
// .glb/.gltf file and prints its JSON report. Exit code: 0 no errors, 1 errors, 2 could not run.
'use strict';
const fs = require('fs');
const path = require('path');

const file = process.argv[2];
if (!file) {
  console.error('usage: node tools/gltf_validate.js FILE.glb|FILE.gltf');
  process.exit(2);
}
let validator;
try {
  validator = require(path.join(__dirname, '..', 'node_modules', 'gltf-validator'));
} catch (e) {
  console.error('gltf-validator is not installed: run `npm install` in the repository root (scripts/setup.sh does it)');
  process.exit(2);
}
const full = path.resolve(file);
validator.validateBytes(new Uint8Array(fs.readFileSync(full)), {
  uri: path.basename(full),
  maxIssues: 200,
  externalResourceFunction: (uri) => new Promise((resolve, reject) => {
    fs.readFile(path.resolve(path.dirname(full), decodeURIComponent(uri)), (err, data) => (err ? reject(err.toString()) : resolve(data)));
  }),
}).then((report) => {
  console.log(JSON.stringify(report, null, 1));
  process.exit(report.issues.numErrors > 0 ? 1 : 0);
}, (err) => {
  console.error(String(err));
  process.exit(2);
});
