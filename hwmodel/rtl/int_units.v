// Integer building blocks of the hardware model (Verilog-2005; Yosys 0.23 and Icarus 11).
// Every module is combinational except fixed_acc and reg_bits, so that a synthesized cell
// count is the cost of exactly the component named in hwmodel/costs/*.csv.

// Signed A x B multiplier, full A+B-bit product.
module int_mul #(parameter A = 4, parameter B = 4) (
    input  signed [A-1:0]   a,
    input  signed [B-1:0]   b,
    output signed [A+B-1:0] p
);
    assign p = a * b;
endmodule

// W-bit signed adder with a W+1-bit result.
module int_add #(parameter W = 8) (
    input  signed [W-1:0] a,
    input  signed [W-1:0] b,
    output signed [W:0]   s
);
    assign s = a + b;
endmodule

// W-bit unsigned exponent adder (e.g. two E8M0 scale codes), W+1-bit result.
module exp_add #(parameter W = 8) (
    input  [W-1:0] a,
    input  [W-1:0] b,
    output [W:0]   s
);
    assign s = a + b;
endmodule

// W-bit unsigned magnitude comparator: gt = a > b.
module comparator #(parameter W = 8) (
    input  [W-1:0] a,
    input  [W-1:0] b,
    output         gt
);
    assign gt = a > b;
endmodule

// W-bit 2:1 multiplexer.
module mux2 #(parameter W = 8) (
    input  [W-1:0] a,
    input  [W-1:0] b,
    input          s,
    output [W-1:0] y
);
    assign y = s ? b : a;
endmodule

// Arithmetic right barrel shifter: W data bits, S shift-amount bits.
module barrel_shifter #(parameter W = 16, parameter S = 4) (
    input  signed [W-1:0] d,
    input         [S-1:0] sh,
    output signed [W-1:0] y
);
    assign y = d >>> sh;
endmodule

// Maximum of N unsigned W-bit inputs (packed, input 0 in the low bits): a balanced tree of
// comparators and muxes (N-1 of each).
module max_tree #(parameter W = 8, parameter N = 16) (
    input  [N*W-1:0] x,
    output [W-1:0]   y
);
    generate
        if (N == 1) begin : g_leaf
            assign y = x;
        end else begin : g_node
            localparam NL = N / 2;
            localparam NH = N - NL;
            wire [W-1:0] yl, yh;
            max_tree #(.W(W), .N(NL)) lo (.x(x[NL*W-1:0]), .y(yl));
            max_tree #(.W(W), .N(NH)) hi (.x(x[N*W-1:NL*W]), .y(yh));
            assign y = (yh > yl) ? yh : yl;
        end
    endgenerate
endmodule

// Signed adder tree of N W-bit inputs with growing widths (+1 bit per level);
// output width W + clog2(N).
module adder_tree #(parameter W = 8, parameter N = 16) (
    input  signed [N*W-1:0]            x,
    output signed [W+$clog2(N)-1:0]    y
);
    localparam OW = W + $clog2(N);
    generate
        if (N == 1) begin : g_leaf
            assign y = $signed(x);
        end else begin : g_node
            localparam NL = N / 2;
            localparam NH = N - NL;
            localparam WL = W + $clog2(NL);
            localparam WH = W + $clog2(NH);
            wire signed [WL-1:0] yl;
            wire signed [WH-1:0] yh;
            adder_tree #(.W(W), .N(NL)) lo (.x(x[NL*W-1:0]), .y(yl));
            adder_tree #(.W(W), .N(NH)) hi (.x(x[N*W-1:NL*W]), .y(yh));
            assign y = $signed(yl) + $signed(yh);
        end
    endgenerate
endmodule

// Fixed-point accumulator: W-bit adder plus W-bit register (acc <= acc + d).
module fixed_acc #(parameter W = 16) (
    input                 clk,
    input                 rst,
    input  signed [W-1:0] d,
    output reg signed [W-1:0] acc
);
    always @(posedge clk) begin
        if (rst) acc <= {W{1'b0}};
        else     acc <= acc + d;
    end
endmodule

// W register bits (the cost of one register bit is the cell count / W).
module reg_bits #(parameter W = 16) (
    input              clk,
    input      [W-1:0] d,
    output reg [W-1:0] q
);
    always @(posedge clk) q <= d;
endmodule
