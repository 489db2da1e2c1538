/**
 * Writes the report of a realistic sample move, to look at without running a move:
 * `npm run build:tools && node dist-test/test/demo/make-report.js [DIR]` writes DIR/report.html
 * (DIR defaults to a new temp directory) and DIR/report.json, and prints both paths.
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildMoveReport, reportJson, writeReport } from '../../controller/move-report';
import { SAMPLE_NOW, sampleExtras, sampleJournal } from '../support/sample-move';

const dir = process.argv[2] ? path.resolve(process.argv[2]) : mkdtempSync(path.join(os.tmpdir(), 'cmm-report-'));
mkdirSync(dir, { recursive: true });
const file = writeReport(dir, sampleJournal(), sampleExtras(), SAMPLE_NOW);
const json = path.join(dir, 'report.json');
writeFileSync(json, reportJson(buildMoveReport(sampleJournal(), sampleExtras(), { source: path.join(dir, 'journal.json'), now: SAMPLE_NOW })));
console.log(`report: ${file}`);
console.log(`json:   ${json}`);
