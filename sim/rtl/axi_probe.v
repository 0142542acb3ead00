// Test-only AXI4 master for the harness's memory model (sim/test_axi_memory.py); not part of hwseg.
// It writes BURSTS bursts of LEN beats from WBASE (beat k of burst i holds {16'hA500 | i, 16'h0 | k} in
// every 32-bit lane, byte 1 of beat 0 masked off by wstrb), issuing every address as soon as the memory
// takes it, and reads BURSTS bursts of LEN beats from RBASE with every address likewise ahead of the data,
// passing each read beat on to m_axis (tlast on each burst's last beat).
module axi_probe #(parameter BURSTS = 6, LEN = 4, WBASE = 512, RBASE = 0) (
  input clk, input rst,
  output reg [15:0] m_axi_awaddr, output [7:0] m_axi_awlen, output [2:0] m_axi_awsize, output [1:0] m_axi_awburst,
  output reg m_axi_awvalid, input m_axi_awready,
  output [63:0] m_axi_wdata, output [7:0] m_axi_wstrb, output m_axi_wlast, output reg m_axi_wvalid, input m_axi_wready,
  input [1:0] m_axi_bresp, input m_axi_bvalid, output m_axi_bready,
  output reg [15:0] m_axi_araddr, output [7:0] m_axi_arlen, output [2:0] m_axi_arsize, output [1:0] m_axi_arburst,
  output reg m_axi_arvalid, input m_axi_arready,
  input [63:0] m_axi_rdata, input [1:0] m_axi_rresp, input m_axi_rlast, input m_axi_rvalid, output m_axi_rready,
  output reg [63:0] m_axis_tdata, output reg m_axis_tvalid, input m_axis_tready, output reg m_axis_tlast);
  assign m_axi_awlen = LEN - 1; assign m_axi_arlen = LEN - 1;
  assign m_axi_awsize = 3; assign m_axi_arsize = 3; assign m_axi_awburst = 1; assign m_axi_arburst = 1;
  reg [7:0] aw_sent = 0, w_burst = 0, w_beat = 0, b_seen = 0, ar_sent = 0, r_seen = 0;
  wire [31:0] lane = {16'hA500 | w_burst, 8'h00, w_beat};
  assign m_axi_wdata = {lane, lane};
  assign m_axi_wstrb = (w_burst == 0 && w_beat == 0) ? 8'hFD : 8'hFF;
  assign m_axi_wlast = w_beat == LEN - 1;
  assign m_axi_bready = 1'b1;
  assign m_axi_rready = !m_axis_tvalid || m_axis_tready;
  always @(posedge clk) begin
    if (rst) begin
      m_axi_awvalid <= 0; m_axi_wvalid <= 0; m_axi_arvalid <= 0; m_axis_tvalid <= 0;
    end else begin
      if (m_axi_awvalid && m_axi_awready) aw_sent <= aw_sent + 1;
      if (!m_axi_awvalid || m_axi_awready) begin
        m_axi_awvalid <= aw_sent + (m_axi_awvalid && m_axi_awready) < BURSTS;
        m_axi_awaddr <= WBASE + (aw_sent + (m_axi_awvalid && m_axi_awready)) * LEN * 8;
      end
      if (m_axi_wvalid && m_axi_wready) begin
        w_beat <= m_axi_wlast ? 0 : w_beat + 1;
        if (m_axi_wlast) w_burst <= w_burst + 1;
      end
      m_axi_wvalid <= w_burst + (m_axi_wvalid && m_axi_wready && m_axi_wlast) < BURSTS;
      if (m_axi_bvalid) b_seen <= b_seen + 1;
      if (m_axi_arvalid && m_axi_arready) ar_sent <= ar_sent + 1;
      if (!m_axi_arvalid || m_axi_arready) begin
        m_axi_arvalid <= ar_sent + (m_axi_arvalid && m_axi_arready) < BURSTS;
        m_axi_araddr <= RBASE + (ar_sent + (m_axi_arvalid && m_axi_arready)) * LEN * 8;
      end
      if (m_axi_rvalid && m_axi_rready) begin
        m_axis_tdata <= m_axi_rdata; m_axis_tlast <= m_axi_rlast; m_axis_tvalid <= 1'b1;
      end else if (m_axis_tready) m_axis_tvalid <= 1'b0;
    end
  end
endmodule
