// Independent reference for GPT-2 token ids: the gpt-3-encoder npm package's own JavaScript
// encoder. Reads a JSON array of strings from the file in argv[3], prints a JSON array of id arrays.
// Usage: node gpt2_encode.js PACKAGE_DIR INPUT_JSON
const path = require('path');
const fs = require('fs');
const encoder = require(path.resolve(process.argv[2], 'Encoder.js'));
const inputs = JSON.parse(fs.readFileSync(process.argv[3], 'utf-8'));
process.stdout.write(JSON.stringify(inputs.map((s) => encoder.encode(s))));
