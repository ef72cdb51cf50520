// A line diff by longest common subsequence: [{op: ' ' | '+' | '-', line}].

export function diffLines(a, b) {
  // Common head and tail need no table.
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) { endA--; endB--; }
  const out = [];
  for (let i = 0; i < start; i++) out.push({ op: ' ', line: a[i] });
  const x = a.slice(start, endA);
  const y = b.slice(start, endB);
  const n = x.length;
  const m = y.length;
  if (n * m > 25e6) {
    // Too large for the table: everything between the common head and tail differs.
    for (const l of x) out.push({ op: '-', line: l });
    for (const l of y) out.push({ op: '+', line: l });
  } else {
    // L[i][j]: LCS length of x[i..] and y[j..].
    const w = m + 1;
    const L = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        L[i * w + j] = x[i] === y[j] ? L[(i + 1) * w + j + 1] + 1 : Math.max(L[(i + 1) * w + j], L[i * w + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (x[i] === y[j]) { out.push({ op: ' ', line: x[i] }); i++; j++; }
      else if (L[(i + 1) * w + j] >= L[i * w + j + 1]) out.push({ op: '-', line: x[i++] });
      else out.push({ op: '+', line: y[j++] });
    }
    while (i < n) out.push({ op: '-', line: x[i++] });
    while (j < m) out.push({ op: '+', line: y[j++] });
  }
  for (let i = endA; i < a.length; i++) out.push({ op: ' ', line: a[i] });
  return out;
}
