// Line endings of a message as it arrives in DATA: every bare CR and bare LF becomes CRLF
// (Postfix 3.9's smtpd_forbid_bare_newline = normalize), so what smtplb stores, signs and sends
// never holds one. RFC 5321 §2.3.8 forbids sending them, and an upstream that takes a bare CR
// or LF for a line end reads `<CR>.<CR>` or `<LF>.<LF>` as the end of the data: the rest
// of the message would be its next commands (SMTP smuggling, SEC Consult 2023). Once
// normalised, such a line is an ordinary "." line, dot-stuffed on the way out.
//
// Chunk by chunk, with one byte of state: a CR at a chunk's end waits for the next chunk's first
// byte. A chunk with no bare ending (the usual case) is passed on as it is, not copied.

const CR = 13;
const LF = 10;
const CRLF = Buffer.from('\r\n');

export class LineEndings {
  /** A CR held back from the end of the last chunk. */
  private heldCR = false;
  /** Whether any bare CR or LF was seen (what `bare_line_endings: reject` refuses). */
  sawBare = false;

  /** The chunk with its line endings made CRLF (a trailing CR is held until the next byte is known). */
  push(input: Buffer): Buffer {
    if (!input.length) return input; // a held CR waits for a byte that is there
    let chunk = input;
    if (this.heldCR) {
      this.heldCR = false;
      if (chunk.length && chunk[0] === LF) chunk = Buffer.concat([CRLF.subarray(0, 1), chunk]);
      else {
        this.sawBare = true;
        chunk = Buffer.concat([CRLF, chunk]);
      }
    }
    let end = chunk.length;
    if (end && chunk[end - 1] === CR) {
      this.heldCR = true;
      end--;
    }
    if (!this.hasBare(chunk, end)) return end === chunk.length ? chunk : chunk.subarray(0, end);
    this.sawBare = true;
    return normalize(chunk, end);
  }

  /** At the end of the data: a held CR was bare. */
  end(): Buffer | null {
    if (!this.heldCR) return null;
    this.heldCR = false;
    this.sawBare = true;
    return CRLF;
  }

  private hasBare(b: Buffer, end: number): boolean {
    for (let i = b.indexOf(LF); i !== -1 && i < end; i = b.indexOf(LF, i + 1)) if (i === 0 || b[i - 1] !== CR) return true;
    for (let i = b.indexOf(CR); i !== -1 && i < end; i = b.indexOf(CR, i + 1)) if (b[i + 1] !== LF) return true;
    return false;
  }
}

/** b[0, end) with every CR or LF that is not part of a CRLF pair turned into CRLF. */
function normalize(b: Buffer, end: number): Buffer {
  const out = Buffer.allocUnsafe(end * 2);
  let o = 0;
  for (let i = 0; i < end; i++) {
    const c = b[i];
    if (c === CR) {
      out[o++] = CR;
      out[o++] = LF;
      if (i + 1 < end && b[i + 1] === LF) i++;
    } else if (c === LF) {
      out[o++] = CR;
      out[o++] = LF;
    } else out[o++] = c;
  }
  return out.subarray(0, o);
}
