// LQER-MXINT designs of the LQER paper (see paper_fp.v for the shared assumptions).
// Needs int_units.v, fp_units.v, mx_units.v.
`default_nettype none
// one file holds a family of modules, not one module named after the file:
/* verilator lint_off DECLFILENAME */


// One block-FP GEMM unit of LQER-MXINT: MX dot product over 16 lanes (XB x WB codes, 8-bit
// shared exponents) with a 32-bit fixed-point cross-block accumulator (16 fraction bits).
module paper_mx_main #(parameter XB = 8, parameter WB = 4) (
    input wire clk, input wire rst,
    input wire [16*XB-1:0] x, input wire [16*WB-1:0] w, input wire [7:0] sx, input wire [7:0] sw,
    output wire signed [31:0] acc
);
    mx_dot_acc_fixed #(.A(XB), .B(WB), .K(16), .W(32), .F(16)) u (
        .clk(clk), .rst(rst), .xa(x), .xb(w), .sa(sx), .sb(sw), .acc(acc));
endmodule

// Re-blocking cast: 16 values with their own exponents -> one shared exponent (max) and
// 16 LB-bit elements (each shifted right by its exponent difference).
module mx_cast16 #(parameter VW = 32, parameter LB = 8) (
    input wire [16*VW-1:0] v,
    input wire [16*8-1:0]  ve,
    output wire [7:0]       emax,
    output wire [16*LB-1:0] q
);
    max_tree #(.W(8), .N(16)) mt (.x(ve), .y(emax));
    genvar i;
    generate
        for (i = 0; i < 16; i = i + 1) begin : g_l
            // 5-bit shift amounts and the top LB bits of the shifted value, as the HLS bfp cast
            /* verilator lint_off UNUSEDSIGNAL */
            wire [7:0] d = emax - ve[i*8 +: 8];
            wire signed [VW-1:0] sh;
            /* verilator lint_on UNUSEDSIGNAL */
            barrel_shifter #(.W(VW), .S(5)) bs (.d(v[i*VW +: VW]), .sh(d[4:0]), .y(sh));
            assign q[i*LB +: LB] = sh[VW-1 -: LB];
        end
    endgenerate
endmodule

// LQER-MXINT XB/WB with low-rank factors of LB bits: mm1 (main), mm2 (x A), mm3 ((xA) B),
// two casts and a block adder (exponent difference, 16 alignment shifters, 16 adders).
// The sheet charges the low-rank part at 1/16: Area = M + (T - M) / 16 with M = mm1 alone.
module paper_lqer_mxint #(parameter XB = 8, parameter WB = 4, parameter LB = 8) (
    input wire clk, input wire rst,
    input wire [16*XB-1:0] x, input wire [16*WB-1:0] w, input wire [16*LB-1:0] a, input wire [16*LB-1:0] b,
    input wire [7:0] sx, input wire [7:0] sw, input wire [7:0] sa, input wire [7:0] sb,
    input wire [16*32-1:0] c1_v, input wire [16*8-1:0] c1_e,
    input wire [16*32-1:0] c2_v, input wire [16*8-1:0] c2_e,
    input wire [16*32-1:0] add_m, input wire [16*32-1:0] add_l, input wire [7:0] add_em, input wire [7:0] add_el,
    output wire signed [31:0] y1, output wire signed [31:0] y2, output wire signed [31:0] y3,
    output wire [16*LB-1:0] q1, output wire [16*LB-1:0] q2, output wire [7:0] e1, output wire [7:0] e2,
    output wire [16*33-1:0] ysum
);
    paper_mx_main #(.XB(XB), .WB(WB)) mm1 (.clk(clk), .rst(rst), .x(x), .w(w), .sx(sx), .sw(sw), .acc(y1));
    mx_dot_acc_fixed #(.A(XB), .B(LB), .K(16), .W(32), .F(16)) mm2 (
        .clk(clk), .rst(rst), .xa(x), .xb(a), .sa(sx), .sb(sa), .acc(y2));
    mx_dot_acc_fixed #(.A(LB), .B(LB), .K(16), .W(32), .F(16)) mm3 (
        .clk(clk), .rst(rst), .xa(q1), .xb(b), .sa(e1), .sb(sb), .acc(y3));
    mx_cast16 #(.VW(32), .LB(LB)) cast1 (.v(c1_v), .ve(c1_e), .emax(e1), .q(q1));
    mx_cast16 #(.VW(32), .LB(LB)) cast2 (.v(c2_v), .ve(c2_e), .emax(e2), .q(q2));
    // block adder: align the block with the smaller exponent, then 16 adders
    wire m_big = (add_em >= add_el);
    /* verilator lint_off UNUSEDSIGNAL */
    wire [7:0] d = m_big ? add_em - add_el : add_el - add_em;   // 5-bit alignment shifts, as above
    /* verilator lint_on UNUSEDSIGNAL */
    genvar i;
    generate
        for (i = 0; i < 16; i = i + 1) begin : g_add
            wire signed [31:0] sml = m_big ? add_l[i*32 +: 32] : add_m[i*32 +: 32];
            wire signed [31:0] bg    = m_big ? add_m[i*32 +: 32] : add_l[i*32 +: 32];
            wire signed [31:0] al;
            barrel_shifter #(.W(32), .S(5)) bs (.d(sml), .sh(d[4:0]), .y(al));
            int_add #(.W(32)) ad (.a(bg), .b(al), .s(ysum[i*33 +: 33]));
        end
    endgenerate
endmodule

`default_nettype wire
