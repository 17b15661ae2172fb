/** Mass failure with gossip-fast.json on every agent (see scenarios.ts). */
import t from 'tap'
import { massFailure } from './scenarios.js'

await massFailure(t, { octet: 100, fastGossip: true })
