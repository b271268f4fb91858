// The worker pool's dealing of one image's passes (no browser): `dealPasses` and `passCosts`
// from www/pool.js.
//   node --test tests/e2e/deal.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dealPasses, passCosts } from '../../www/pool.js';

test('pass 0 stays with the lead and the costliest passes spread first', () => {
  // 1.5.0: Lite0 at 192, Lite1 at 192, Lite2 at 344, one view each (multiply-adds as the
  // core's block table counts them; pool.test.mjs checks the page's own counts).
  const costs = passCosts([
    { arch: 'efficientnet-lite0', inputSize: 192, views: 1, multiplyAdds: 282_054_528 },
    { arch: 'efficientnet-lite1', inputSize: 192, views: 1, multiplyAdds: 368_219_520 },
    { arch: 'efficientnet-lite2', inputSize: 344, views: 1, multiplyAdds: 1_399_811_392 },
  ]);
  assert.equal(costs.length, 3);
  assert.ok(costs[2] > costs[0] + costs[1], `the Lite2 pass outweighs the other two: ${costs}`);
  // In turn, the lead would run passes 0 and 2; by cost it runs 0 and 1, the helper the Lite2.
  assert.deepEqual(dealPasses(costs, 2), [[0, 1], [2]]);
  assert.deepEqual(dealPasses(costs, 3), [[0], [2], [1]]);
  assert.deepEqual(dealPasses(costs, 1), [[0, 1, 2]]);
});

test('equal costs deal in turn, and every pass is dealt exactly once', () => {
  assert.deepEqual(dealPasses([1, 1, 1, 1], 2), [[0, 2], [1, 3]]);
  assert.deepEqual(dealPasses([1, 1, 1, 1, 1, 1, 1, 1], 3), [[0, 3, 6], [1, 4, 7], [2, 5]]);
  for (const workers of [1, 2, 3, 5]) {
    const costs = Array.from({ length: 9 }, (_, i) => ((i * 7) % 5) + 1);
    const shares = dealPasses(costs, workers);
    assert.equal(shares.length, workers);
    assert.deepEqual(shares.flat().sort((a, b) => a - b), [...Array(9).keys()]);
    assert.ok(shares[0].includes(0));
    // Greedy by cost: no worker ends with more than the lightest one plus the largest pass.
    const loads = shares.map((s) => s.reduce((sum, p) => sum + costs[p], 0));
    assert.ok(Math.max(...loads) - Math.min(...loads) <= Math.max(...costs), `${loads}`);
  }
  assert.deepEqual(dealPasses([], 2), [[], []]);
});

test("views multiply a member's passes", () => {
  const costs = passCosts([
    { inputSize: 128, views: 4, multiplyAdds: 10 },
    { inputSize: 128, views: 2, multiplyAdds: 30 },
  ]);
  assert.deepEqual(costs, [10, 10, 10, 10, 30, 30]);
});
