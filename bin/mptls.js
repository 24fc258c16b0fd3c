#!/usr/bin/env node
import { main } from '../dist/api/cli.js';
process.exitCode = await main(process.argv.slice(2));
