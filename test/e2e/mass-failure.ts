/** Mass failure reported slowly, Consul's default gossip (see scenarios.ts). `npm run repeat:mass-failure` runs it 5 times. */
import t from 'tap'
import { massFailure } from './scenarios.js'

await massFailure(t, { octet: 90, fastGossip: false })
