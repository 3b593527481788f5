// Floating-point building blocks (IEEE 754 binary16 / binary32), Verilog-2005.
// Rounding: round to nearest, ties to even, everywhere. Subnormal inputs and outputs are
// handled in full (no flush to zero). Overflow rounds to +-Inf. NaN outputs are the
// canonical quiet NaN (0x7E00 for FP16, 0x7FC00000 for FP32); the NaN payload is not kept.
`default_nettype none
// one file holds a family of modules, not one module named after the file:
/* verilator lint_off DECLFILENAME */


// Round an exact value  (-1)^sgn * mag * 2^ex  to an IEEE format with EW exponent bits and
// MW fraction bits (RNE, gradual underflow, overflow to Inf). mag == 0 gives a signed zero.
module fp_round_pack #(parameter W = 24, parameter EW = 5, parameter MW = 10, parameter XW = 12) (
    input wire sgn,
    input wire [W-1:0]     mag,
    input wire signed [XW-1:0]  ex,
    output wire [EW+MW:0]   y
);
    localparam BIAS = (1 << (EW - 1)) - 1;
    localparam EMIN = 1 - BIAS;
    localparam WP = (W > MW + 1) ? W : MW + 1;   // magnitude width, at least MW+1
    localparam IX = XW + 3;                      // internal exponent width
    localparam LW = $clog2(WP + 1);
    // the constants below at the width they are used with
    // (a part-select of an integer localparam sizes a constant without a width warning)
    localparam integer WP_I = WP, WP_M1_I = WP - 1, WP_P1_I = WP + 1, EMIN_I = EMIN, MW_I = MW,
                       MW_BIAS_I = MW + BIAS, EXP_INF_I = (1 << EW) - 1;
    localparam [LW-1:0]        LZ_NONE = WP_I[LW-1:0];
    localparam [LW-1:0]        LZ_TOP  = WP_M1_I[LW-1:0];
    localparam signed [IX-1:0] WP_M1   = WP_M1_I[IX-1:0];
    localparam signed [IX-1:0] WP_P1   = WP_P1_I[IX-1:0];
    localparam signed [IX-1:0] EMIN_X  = EMIN_I[IX-1:0];
    localparam signed [IX-1:0] MW_X    = MW_I[IX-1:0];
    localparam signed [IX-1:0] MW_BIAS = MW_BIAS_I[IX-1:0];
    localparam signed [IX-1:0] EXP_INF = EXP_INF_I[IX-1:0];

    wire [WP-1:0] magx;
    generate
        if (WP > W) begin : g_pad
            assign magx = {{(WP - W){1'b0}}, mag};
        end else begin : g_same
            assign magx = mag;
        end
    endgenerate

    // leading-zero count
    reg [LW-1:0] lz;
    integer i;
    always @* begin
        lz = LZ_NONE;
        for (i = 0; i < WP; i = i + 1)
            if (magx[i]) lz = LZ_TOP - i[LW-1:0];
    end

    wire signed [IX-1:0] exw   = {{3{ex[XW-1]}}, ex};
    wire signed [IX-1:0] lzs   = {{(IX - LW){1'b0}}, lz};
    wire signed [IX-1:0] e_msb = exw + WP_M1 - lzs;              // exponent of the leading one
    wire signed [IX-1:0] t     = ((e_msb < EMIN_X) ? EMIN_X : e_msb) - MW_X;   // exponent of the result lsb
    wire signed [IX-1:0] r     = t - exw;                        // right-shift amount

    // r <= 0: exact left shift; the leading one then sits at or below bit MW, so MW+1 bits suffice
    wire [IX-1:0]      lsh = -r;
    wire [MW:0]        ml  = magx[MW:0] << lsh;
    // r > 0: right shift with guard and sticky
    wire               rpos = (r > 0);
    wire [IX-1:0]      rc   = (r > WP_P1) ? WP_P1 : r;
    wire [2*WP:0]      sh   = {magx, {(WP + 1){1'b0}}} >> rc;
    wire [MW:0]        m    = rpos ? sh[WP + 1 + MW:WP + 1] : ml;
    wire               g    = rpos & sh[WP];
    wire               st   = rpos & (|sh[WP-1:0]);
    wire               inc  = g & (st | m[0]);
    wire [MW+1:0]      m2   = {1'b0, m} + {{(MW + 1){1'b0}}, inc};
    wire               ovf  = m2[MW+1];
    wire [MW:0]        mf   = ovf ? m2[MW+1:1] : m2[MW:0];
    wire signed [IX-1:0] tf = t + {{(IX - 1){1'b0}}, ovf};
    wire               normal = mf[MW];
    wire signed [IX-1:0] bexp = tf + MW_BIAS;
    wire               is_inf = normal & (bexp >= EXP_INF);
    assign y = is_inf ? {sgn, {EW{1'b1}}, {MW{1'b0}}}
                      : {sgn, (normal ? bexp[EW-1:0] : {EW{1'b0}}), mf[MW-1:0]};
endmodule

// Exact sum of two values (-1)^sx*mx*2^ex + (-1)^sy*my*2^ey, rounded ONCE to the IEEE
// format (EW, MW). The operand with the larger lsb exponent is shifted left by the
// exponent difference d into a window of MB + D + 2 bits; when d > D = MB + MW + 2 the
// smaller operand lies wholly below half an ulp of the result and is replaced by a one in
// the lsb of the window (a sticky bit with its sign), which rounds identically.
// A zero result of non-zero operands is +0; 0 + 0 gives -0 only when both are -0.
module fp_add_exact #(parameter MB = 24, parameter EW = 8, parameter MW = 23, parameter XW = 12) (
    input wire sx,
    input wire [MB-1:0]   mx,
    input wire signed [XW-1:0] ex,
    input wire sy,
    input wire [MB-1:0]   my,
    input wire signed [XW-1:0] ey,
    output wire [EW+MW:0]  y
);
    localparam D  = MB + MW + 2;
    localparam WW = MB + D + 2;
    localparam DW = $clog2(D + 2) + 1;
    localparam integer E_NONE_I = -(1 <<< (XW - 1)), D_I = D, D_FAR_I = D + 1;
    localparam signed [XW:0]   E_NONE = E_NONE_I[XW:0];   // below any operand's exponent
    localparam signed [XW+1:0] D_X    = D_I[XW+1:0];
    localparam [DW-1:0]        D_FAR  = D_FAR_I[DW-1:0];

    wire xz = (mx == 0);
    wire yz = (my == 0);
    // a zero operand never sets the alignment
    wire signed [XW:0] exe = xz ? E_NONE : {ex[XW-1], ex};
    wire signed [XW:0] eye = yz ? E_NONE : {ey[XW-1], ey};
    wire x_big = (exe >= eye);
    wire          sb = x_big ? sx  : sy;
    wire [MB-1:0] mb = x_big ? mx  : my;
    wire signed [XW:0] eb = x_big ? exe : eye;
    wire          ss = x_big ? sy  : sx;
    wire [MB-1:0] ms = x_big ? my  : mx;
    wire signed [XW:0] es = x_big ? eye : exe;

    wire signed [XW+1:0] d = {eb[XW], eb} - {es[XW], es};   // >= 0
    wire far = (d > D_X);
    wire [DW-1:0] dd = far ? D_FAR : d[DW-1:0];
    wire [WW-1:0] big_al   = {{(WW - MB){1'b0}}, mb} << dd;
    wire [WW-1:0] small_al = far ? {{(WW - 1){1'b0}}, (ms != 0)} : {{(WW - MB){1'b0}}, ms};
    wire eff_sub = sb ^ ss;
    wire [WW:0] sum = eff_sub ? ({1'b0, big_al} - {1'b0, small_al})
                              : ({1'b0, big_al} + {1'b0, small_al});
    wire neg = eff_sub & sum[WW];
    wire [WW-1:0] mag = neg ? (~sum[WW-1:0] + 1'b1) : sum[WW-1:0];
    wire is_zero = (mag == 0);
    wire sgn = is_zero ? (xz & yz & sx & sy) : (sb ^ neg);
    wire signed [XW+1:0] eo = {eb[XW], eb} - $signed({{(XW + 1 - DW){1'b0}}, dd});

    fp_round_pack #(.W(WW), .EW(EW), .MW(MW), .XW(XW + 2)) rp (
        .sgn(sgn), .mag(mag), .ex(eo), .y(y));
endmodule

// IEEE adder for EW/MW formats, the classic area-lean datapath: order the operands by
// magnitude, align the smaller with guard, round and sticky bits (the sticky ORed into the
// lsb), add or subtract, then normalize and round once (RNE) in fp_round_pack. Correctly
// rounded: bits are lost to the sticky only when the exponent difference is >= 2, where
// cancellation removes at most one leading bit. Inf/NaN per IEEE; canonical quiet NaN.
module fp_add #(parameter EW = 5, parameter MW = 10) (
    input wire [EW+MW:0] a,
    input wire [EW+MW:0] b,
    output wire [EW+MW:0] y
);
    localparam BIAS = (1 << (EW - 1)) - 1;
    localparam XW = EW + 3;
    localparam SW = MW + 4;                       // significand + guard, round, sticky
    wire [EW-1:0] ea = a[EW+MW-1:MW], eb = b[EW+MW-1:MW];
    wire a_nan = (&ea) & (a[MW-1:0] != 0);
    wire b_nan = (&eb) & (b[MW-1:0] != 0);
    wire a_inf = (&ea) & (a[MW-1:0] == 0);
    wire b_inf = (&eb) & (b[MW-1:0] == 0);
    wire swap = (b[EW+MW-1:0] > a[EW+MW-1:0]);    // |b| > |a|
    wire [EW+MW:0] p = swap ? b : a;              // larger magnitude
    wire [EW+MW:0] q = swap ? a : b;
    wire [EW-1:0] ep = p[EW+MW-1:MW], eq = q[EW+MW-1:MW];
    wire [EW-1:0] lp = (ep == 0) ? 1 : ep;        // subnormals share exponent 1
    wire [EW-1:0] lq = (eq == 0) ? 1 : eq;
    wire [MW:0] mp = {ep != 0, p[MW-1:0]};
    wire [MW:0] mq = {eq != 0, q[MW-1:0]};
    wire [EW-1:0] d = lp - lq;
    wire far = (d >= SW);
    wire [2*SW-1:0] qs = {mq, 3'b000, {SW{1'b0}}} >> (far ? SW : d);
    wire [SW-1:0] qa = {qs[2*SW-1:SW+1], qs[SW] | (|qs[SW-1:0]) | (far & (mq != 0))};
    wire [SW-1:0] pa = {mp, 3'b000};
    wire sub = p[EW+MW] ^ q[EW+MW];
    wire [SW:0] sum = sub ? ({1'b0, pa} - {1'b0, qa}) : ({1'b0, pa} + {1'b0, qa});
    wire both_neg_zero = (a[EW+MW-1:0] == 0) & (b[EW+MW-1:0] == 0) & a[EW+MW] & b[EW+MW];
    wire sgn = (sum == 0) ? both_neg_zero : p[EW+MW];
    wire signed [XW-1:0] ex = $signed({3'b000, lp}) - (BIAS + MW + 3);
    wire [EW+MW:0] core;
    fp_round_pack #(.W(SW + 1), .EW(EW), .MW(MW), .XW(XW)) rp (.sgn(sgn), .mag(sum), .ex(ex), .y(core));
    wire [EW+MW:0] qnan = {1'b0, {EW{1'b1}}, 1'b1, {(MW - 1){1'b0}}};
    assign y = (a_nan | b_nan | (a_inf & b_inf & (a[EW+MW] ^ b[EW+MW]))) ? qnan :
               a_inf ? a : b_inf ? b : core;
endmodule

// FP16 adder (RNE, subnormals, Inf/NaN per IEEE; canonical NaN 0x7E00).
module fp16_add (
    input wire [15:0] a,
    input wire [15:0] b,
    output wire [15:0] y
);
    fp_add #(.EW(5), .MW(10)) u (.a(a), .b(b), .y(y));
endmodule

// FP32 adder (RNE, subnormals, Inf/NaN per IEEE; canonical NaN 0x7FC00000).
module fp32_add (
    input wire [31:0] a,
    input wire [31:0] b,
    output wire [31:0] y
);
    fp_add #(.EW(8), .MW(23)) u (.a(a), .b(b), .y(y));
endmodule

// FP16 multiplier (exact 11x11 significand product, one RNE rounding).
module fp16_mul (
    input wire [15:0] a,
    input wire [15:0] b,
    output wire [15:0] y
);
    wire [4:0] ea = a[14:10], eb = b[14:10];
    wire a_nan = (ea == 5'h1f) & (a[9:0] != 0);
    wire b_nan = (eb == 5'h1f) & (b[9:0] != 0);
    wire a_inf = (ea == 5'h1f) & (a[9:0] == 0);
    wire b_inf = (eb == 5'h1f) & (b[9:0] == 0);
    wire a_zero = (a[14:0] == 0);
    wire b_zero = (b[14:0] == 0);
    wire s = a[15] ^ b[15];
    wire [10:0] ma = {ea != 0, a[9:0]};
    wire [10:0] mb = {eb != 0, b[9:0]};
    wire [21:0] p = ma * mb;
    wire signed [7:0] xa = $signed({3'b000, (ea == 0) ? 5'd1 : ea}) - 8'sd25;
    wire signed [7:0] xb = $signed({3'b000, (eb == 0) ? 5'd1 : eb}) - 8'sd25;
    wire signed [7:0] xp = xa + xb;
    wire [15:0] core;
    fp_round_pack #(.W(22), .EW(5), .MW(10), .XW(8)) rp (.sgn(s), .mag(p), .ex(xp), .y(core));
    assign y = (a_nan | b_nan | (a_inf & b_zero) | (b_inf & a_zero)) ? 16'h7e00 :
               (a_inf | b_inf) ? {s, 5'h1f, 10'h000} : core;
endmodule

// FP16 divider a / b: both significands normalized, restoring division to 14 quotient bits
// plus a sticky remainder bit, one RNE rounding. x/0 = Inf (x != 0), 0/0 and Inf/Inf = NaN.
module fp16_div (
    input wire [15:0] a,
    input wire [15:0] b,
    output wire [15:0] y
);
    wire [4:0] ea = a[14:10], eb = b[14:10];
    wire a_nan = (ea == 5'h1f) & (a[9:0] != 0);
    wire b_nan = (eb == 5'h1f) & (b[9:0] != 0);
    wire a_inf = (ea == 5'h1f) & (a[9:0] == 0);
    wire b_inf = (eb == 5'h1f) & (b[9:0] == 0);
    wire a_zero = (a[14:0] == 0);
    wire b_zero = (b[14:0] == 0);
    wire s = a[15] ^ b[15];
    wire [10:0] ma = {ea != 0, a[9:0]};
    wire [10:0] mb = {eb != 0, b[9:0]};
    wire signed [7:0] xa = $signed({3'b000, (ea == 0) ? 5'd1 : ea}) - 8'sd25;
    wire signed [7:0] xb = $signed({3'b000, (eb == 0) ? 5'd1 : eb}) - 8'sd25;
    reg [3:0] lza, lzb;
    integer i;
    always @* begin
        lza = 4'd11; lzb = 4'd11;
        for (i = 0; i < 11; i = i + 1) begin
            if (ma[i]) lza = 4'd10 - i[3:0];
            if (mb[i]) lzb = 4'd10 - i[3:0];
        end
    end
    wire [10:0] man = ma << lza;
    wire [10:0] mbn = mb << lzb;
    // quotient of (man * 2^13) / mbn: in [2^12, 2^14)
    reg [11:0] rem;
    reg [13:0] q;
    integer j;
    always @* begin
        rem = {1'b0, man};
        q = 0;
        for (j = 13; j >= 0; j = j - 1) begin
            if (rem >= {1'b0, mbn}) begin
                rem = rem - {1'b0, mbn};
                q[j] = 1'b1;
            end
            rem = {rem[10:0], 1'b0};
        end
    end
    wire sticky = (rem != 0);
    wire signed [7:0] xq = xa - $signed({4'b0000, lza}) - xb + $signed({4'b0000, lzb}) - 8'sd14;
    wire [15:0] core;
    fp_round_pack #(.W(15), .EW(5), .MW(10), .XW(8)) rp (.sgn(s), .mag({q, sticky}), .ex(xq), .y(core));
    assign y = (a_nan | b_nan | (a_zero & b_zero) | (a_inf & b_inf)) ? 16'h7e00 :
               (a_inf | b_zero) ? {s, 5'h1f, 10'h000} :
               (a_zero | b_inf) ? {s, 15'h0000} : core;
endmodule

// Signed A-bit integer to FP16 (RNE; magnitudes above 65504 round to Inf).
module int_to_fp16 #(parameter A = 16) (
    input wire signed [A-1:0] x,
    output wire [15:0]  y
);
    wire s = x[A-1];
    wire [A-1:0] mag = s ? -x : x;
    fp_round_pack #(.W(A), .EW(5), .MW(10), .XW(8)) rp (.sgn(s), .mag(mag), .ex(8'sd0), .y(y));
endmodule

// FP16 to signed A-bit integer: round to nearest even, saturate to +-(2^(A-1)-1)
// (symmetric, as MXINT/LLM.int8() codes), NaN gives 0, +-Inf saturates.
module fp16_to_int #(parameter A = 8) (
    input wire [15:0]  x,
    output wire signed [A-1:0] y
);
    localparam [A-1:0] MAXV = (1 << (A - 1)) - 1;
    wire [4:0] e = x[14:10];
    wire is_nan = (e == 5'h1f) & (x[9:0] != 0);
    wire is_inf = (e == 5'h1f) & (x[9:0] == 0);
    wire [10:0] m = {e != 0, x[9:0]};
    // value = m * 2^(le - 25) with le = max(e, 1)
    wire [4:0] le = (e == 0) ? 5'd1 : e;
    wire left = (le >= 25);
    wire [4:0] lsh = le - 5'd25;          // 0..5 when left
    wire [4:0] rsh = 5'd25 - le;          // 1..24 otherwise
    wire [16:0] vl = {6'b0, m} << lsh;
    wire [35:0] sh = {m, 25'b0} >> rsh;   // integer part in [35:25], guard [24], sticky [23:0]
    wire [10:0] qi = sh[35:25];
    wire g = sh[24];
    wire st = |sh[23:0];
    wire [11:0] qr = {1'b0, qi} + {11'b0, g & (st | qi[0])};
    wire [16:0] mag = left ? vl : {5'b0, qr};
    // saturate: compare the 17-bit magnitude with MAXV at a common width of A + 17 bits
    wire [A+16:0] magw = {{A{1'b0}}, mag};
    wire [A+16:0] maxw = {17'b0, MAXV};
    wire sat = is_inf | (magw > maxw);
    wire [A-1:0] magc = sat ? MAXV : magw[A-1:0];
    assign y = is_nan ? {A{1'b0}} : (x[15] ? -magc : magc);
endmodule

// FP16 multiply-accumulate: acc <= acc + a*b (two roundings: product, then sum).
module fp16_mac (
    input wire clk,
    input wire rst,
    input wire [15:0] a,
    input wire [15:0] b,
    output reg [15:0] acc
);
    wire [15:0] p, s;
    fp16_mul mul (.a(a), .b(b), .y(p));
    fp16_add add (.a(acc), .b(p), .y(s));
    always @(posedge clk) begin
        if (rst) acc <= 16'h0000;
        else     acc <= s;
    end
endmodule

`default_nettype wire
